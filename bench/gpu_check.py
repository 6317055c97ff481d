"""Every GPU check of auditq in one run (issue 22): figures to $OUT/gpu_check.json, output to $OUT/gpu_check.log.

Run through bench/gpu_check.sh (which installs the carried wheels first). Settings come from the environment:

    OUT                   where gpu_check.json / gpu_check.log / reports.tar.gz go (required)
    DEVICE                cuda (default) or cpu: the CPU stand-in runs the same steps on the CPU
    GPU_CHECK_STEPS       comma-separated subset of STEPS (default: all, bench_7b only if time is left)
    GPU_CHECK_BUDGET_S    wall budget of the whole run in seconds (default 400); a step that would start
                          with less than its minimum left is recorded as skipped, a running one is killed
                          at min(its budget, what is left) and recorded as timeout
    GPU_CHECK_SHAPE       the main bench shape (default llama-3.2-1b on cuda, small on cpu; tests use tiny)
    GPU_CHECK_WORK        scratch folder (default /tmp/auditq-gpu-check; emptied first)
    GPU_CHECK_DEMO_CACHE  a prebuilt demo cache (default .gpu-carry/demo, made by bench/gpu_wheels.sh --demo)
    GPU_CHECK_BUILD_DEMO  1: build the demo models when no cache matches (default 1 on cuda, 0 on cpu)
    GPU_CHECK_THREADS     torch CPU threads of each child (default: cores // 2 on cuda, 1 on cpu)
    GPU_CHECK_STEP_SCALE  multiplies every step's budget (default 1 on cuda, 8 on cpu: the stand-in is slower)

Each step is guarded: an exception, a non-zero exit or a timeout is recorded in the JSON with the tail of
its output and the next step still runs. The JSON is rewritten after every step, so a run killed from
outside still leaves the steps it finished. Every step has "status": ok | failed | timeout | skipped |
not_checked, "seconds", and its figures; "checks" inside a step compare figures with the targets (true /
false / null when not measurable). No step asserts: the JSON is the result.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STEPS = ("env", "demo", "bench_main", "bnb_nf4", "device_map", "gptq4", "gguf_offload", "bench_7b")
#: (budget, minimum to start) in seconds, as measured/expected on one H200 (see docs/gpu.md)
BUDGETS = {"env": (60, 5), "demo": (150, 30), "bench_main": (180, 60), "bnb_nf4": (90, 20),
           "gptq4": (150, 30), "device_map": (90, 20), "gguf_offload": (90, 1), "bench_7b": (450, 200)}
DEMO_BUILD_BUDGET = 240
#: per-sample mean log-prob (the MIA probe's "loss") of the same demo model, float32 on both devices
TOL_FP32 = 1e-4
SCHEMA = "auditq-gpu-check/1"
#: exit codes of `auditq check` that wrote a report: PASS, FAIL, UNKNOWN (mia alone leaves checks unknown)
REPORTED = (0, 1, 3)


class Runner:
    def __init__(self) -> None:
        self.out = Path(os.environ["OUT"])
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = os.environ.get("DEVICE", "cuda")
        self.on_gpu = self.device.startswith("cuda")
        self.budget = float(os.environ.get("GPU_CHECK_BUDGET_S", "400"))
        self.start = time.monotonic()
        self.work = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/auditq-gpu-check"))
        self.work.mkdir(parents=True, exist_ok=True)
        for old in self.work.iterdir():  # a fresh scratch, but an earlier run's trio stays for a rerun's engine steps
            if not (old.is_dir() and old.name.startswith("trio-")):
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        self.shape = os.environ.get("GPU_CHECK_SHAPE", "llama-3.2-1b" if self.on_gpu else "small")
        cores = os.cpu_count() or 1
        self.threads = int(os.environ.get("GPU_CHECK_THREADS", str(max(1, cores // 2) if self.on_gpu else 1)))
        self.dtype = "bfloat16" if self.on_gpu else "float32"
        self.scale = float(os.environ.get("GPU_CHECK_STEP_SCALE", "1" if self.on_gpu else "8"))
        asked = os.environ.get("GPU_CHECK_STEPS", "")
        self.steps = [s for s in STEPS if s in asked.split(",")] if asked else list(STEPS)
        unknown = set(asked.split(",")) - set(STEPS) - {""}
        self.log_file = open(self.out / "gpu_check.log", "a", encoding="utf-8")
        self.result = {
            "schema": SCHEMA, "device": self.device, "dtype": self.dtype, "shape": self.shape,
            "threads": self.threads, "budget_s": self.budget, "step_budget_scale": self.scale, "steps_asked": self.steps,
            "unknown_steps": sorted(unknown), "tolerance_fp32_mean_logp": TOL_FP32,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "install": self._install(),
            "steps": {},
        }
        self.trio: dict[str, str] | None = None
        self.save()

    # ----------------------------------------------------------------- plumbing

    def _install(self) -> dict:
        path = os.environ.get("GPU_CHECK_INSTALL_JSON")
        if path and Path(path).is_file():
            try:
                return json.loads(Path(path).read_text())
            except ValueError as exc:
                return {"status": "failed", "error": f"unreadable {path}: {exc}"}
        return {"status": "not_run", "note": "gpu_check.py was started without gpu_check.sh's install step"}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def log(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')} +{time.monotonic() - self.start:6.1f}s] {message}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def save(self) -> None:
        self.result["elapsed_s"] = round(time.monotonic() - self.start, 2)
        tmp = self.out / ".gpu_check.json.tmp"
        tmp.write_text(json.dumps(self.result, indent=1, default=str))
        tmp.replace(self.out / "gpu_check.json")

    def env(self, **extra: str) -> dict:
        env = dict(os.environ)
        path = [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env.update(PYTHONPATH=os.pathsep.join(path), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   OMP_NUM_THREADS=str(self.threads), HF_HOME=str(self.work / "hf_home"),
                   AUDITQ_CACHE_DIR=str(self.work / "cache-default"))
        env.update(extra)
        return env

    def spawn(self, name: str, cmd: list[str], env: dict | None = None) -> tuple:
        shown = " ".join(cmd)
        self.log(f"$ {shown if len(shown) < 400 else shown[:400] + ' ...'}")
        log_path = self.work / f"{name}.out"
        handle = open(log_path, "w", encoding="utf-8")
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                env=env or self.env(), start_new_session=True)
        return name, proc, handle, log_path, time.monotonic()

    def wait(self, started: tuple, deadline: float) -> dict:
        name, proc, handle, log_path, t0 = started
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the child and everything it started
            rc = proc.wait()
            timed_out = True
        handle.close()
        text = log_path.read_text(encoding="utf-8", errors="replace")
        self.log_file.write(f"----- output of {name} (rc {rc}{', killed at its time budget' if timed_out else ''})\n")
        self.log_file.write(text[-200_000:] + "\n")
        self.log_file.flush()
        return {"rc": rc, "timed_out": timed_out, "seconds": round(time.monotonic() - t0, 2),
                "tail": text.strip().splitlines()[-25:], "text": text}

    def call(self, name: str, cmd: list[str], deadline: float, env: dict | None = None) -> dict:
        return self.wait(self.spawn(name, cmd, env), deadline)

    def python(self, code: str) -> list[str]:
        return [sys.executable, "-c", code]

    def auditq(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "auditq", *args]

    # ----------------------------------------------------------------- the run

    def run(self) -> int:
        queue = list(self.steps)
        self.deferred: set[str] = set()
        while queue:
            name = queue.pop(0)
            budget, minimum = BUDGETS[name]
            budget *= self.scale
            left = self.left()
            record: dict = {"budget_s": budget}
            self.result["steps"][name] = record
            if left < minimum:
                record.update(status="skipped", seconds=0.0,
                              reason=f"{left:.0f} s left of the run's {self.budget:.0f} s budget, this step needs "
                                     f"at least {minimum} s; rerun with GPU_CHECK_STEPS={name}")
                self.log(f"step {name}: skipped ({record['reason']})")
                self.save()
                continue
            deadline = time.monotonic() + min(budget, left)
            self.log(f"step {name}: start (budget {min(budget, left):.0f} s)")
            t0 = time.monotonic()
            try:
                record.update(getattr(self, f"step_{name}")(deadline))
                record.setdefault("status", "ok")
            except StepDeferred as exc:  # e.g. the demo models must be built first: after the GPU steps
                record.update(status="deferred", reason=str(exc), seconds=round(time.monotonic() - t0, 2))
                self.deferred.add(name)
                self.log(f"step {name}: deferred ({exc})")
                at = queue.index("bench_7b") if "bench_7b" in queue else len(queue)
                queue.insert(at, name)
                self.save()
                continue
            except StepTimeout as exc:
                record.update(status="timeout", error=str(exc), tail=exc.tail)
            except StepFailed as exc:
                record.update(status="failed", error=str(exc), tail=exc.tail)
            except Exception as exc:  # noqa: BLE001 - one broken step must not stop the others
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                              tail=traceback.format_exc().splitlines()[-15:])
            record["seconds"] = round(time.monotonic() - t0, 2)
            self.log(f"step {name}: {record['status']} in {record['seconds']:.1f} s"
                     + (f" ({record.get('error') or record.get('reason')})" if record["status"] != "ok" else ""))
            self.save()
        self._pack_reports()
        summary = {s: r.get("status") for s, r in self.result["steps"].items()}
        checks = {f"{s}.{k}": v for s, r in self.result["steps"].items() for k, v in (r.get("checks") or {}).items()}
        self.result["summary"] = {"status": summary, "checks": checks,
                                  "checks_failed": sorted(k for k, v in checks.items() if v is False)}
        self.result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.save()
        self.log(f"done: {json.dumps(summary)}; failed checks: {self.result['summary']['checks_failed']}")
        return 0

    def _pack_reports(self) -> None:
        """report.json / samples.jsonl of every audit into one archive (8 files at most come back)."""
        reports = sorted(self.work.glob("out-*/report.json")) + sorted(self.work.glob("out-*/samples.jsonl"))
        if not reports:
            return
        with tarfile.open(self.out / "reports.tar.gz", "w:gz") as tar:
            for path in reports:
                tar.add(path, arcname=f"{path.parent.name}/{path.name}")

    def checked(self, name: str, outcome: dict, allowed: tuple[int, ...] = (0,)) -> dict:
        if outcome["timed_out"]:
            raise StepTimeout(f"{name} ran past its time budget ({outcome['seconds']:.0f} s)", outcome["tail"])
        if outcome["rc"] not in allowed:
            raise StepFailed(f"{name} exited {outcome['rc']}", outcome["tail"])
        return outcome

    # ----------------------------------------------------------------- steps

    def step_env(self, deadline: float) -> dict:
        code = r'''
import json, os, shutil, subprocess, importlib.metadata as md, platform
import torch
def v(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
out = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
       "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count(),
       "packages": {n: v(n) for n in ("transformers", "accelerate", "peft", "safetensors", "tokenizers", "numpy",
                                      "bitsandbytes", "gptqmodel", "torchao", "datasets", "llama-cpp-python",
                                      "gguf", "rouge-score", "nltk", "platformdirs", "typer", "rich")},
       "disk_free_gib": shutil.disk_usage("/tmp").free / 2**30}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    out.update(gpu=p.name, gpu_memory_gib=p.total_memory / 2**30, capability=list(torch.cuda.get_device_capability(0)),
               gpu_count=torch.cuda.device_count(), tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
try:
    import auditq
    out["auditq"] = auditq.__version__
    out["auditq_path"] = auditq.__file__
except Exception as exc:
    out["auditq"] = f"import failed: {exc}"
if shutil.which("nvidia-smi"):
    r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used",
                        "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    out["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
print(json.dumps(out))
'''
        outcome = self.checked("env", self.call("env", self.python(code), deadline))
        info = json.loads(outcome["text"].strip().splitlines()[-1])
        checks = {"cuda_available": info["cuda_available"]} if self.on_gpu else {}
        if str(info.get("auditq", "")).startswith("import failed"):
            raise StepFailed(f"auditq does not import: {info['auditq']}", outcome["tail"])
        return {"info": info, "checks": checks}

    # -- the demo pair on the device vs the CPU

    def _demo_models(self, deadline: float) -> tuple[Path, dict]:
        carried = Path(os.environ.get("GPU_CHECK_DEMO_CACHE", REPO / ".gpu-carry" / "demo"))
        build = os.environ.get("GPU_CHECK_BUILD_DEMO", "1" if self.on_gpu else "0") == "1"
        code = ("import json, sys, time; from auditq.demo.build import build_demo, cache_key; "
                "from auditq.suite.records import bundled_suite_dir; t = time.perf_counter(); "
                "m = build_demo(cache_dir=sys.argv[1], log=lambda s: print(s, flush=True)) if sys.argv[2] == '1' else None; "
                "print(json.dumps({'key': cache_key(bundled_suite_dir('demo')), 'dir': str(m.base.parent) if m else None, "
                "'seconds': time.perf_counter() - t}))")
        # does the carried cache match this code? (build_demo returns at once if it does)
        probe = self.checked("demo-cache", self.call("demo-cache", self.python(code) + [str(carried), "0"], deadline))
        key = json.loads(probe["text"].strip().splitlines()[-1])["key"]
        matches = [p for p in carried.glob(f"demo-*-{key}") if (p / "build.json").is_file()] if carried.is_dir() else []
        if matches:
            return matches[0], {"demo_models": "carried", "cache": str(matches[0])}
        if not build:
            raise StepSkipped(f"no demo cache for key {key} under {carried} (make it with bench/gpu_wheels.sh --demo, "
                              "or set GPU_CHECK_BUILD_DEMO=1)")
        if "demo" not in self.deferred and any(s not in ("demo", "bench_7b", "env") for s in self.steps):
            raise StepDeferred(f"no demo cache for key {key} under {carried}: the demo models are built here (CPU "
                               "training, minutes) after the other steps, so that they cannot crowd them out")
        target = self.work / "demo-build"
        built_deadline = min(time.monotonic() + DEMO_BUILD_BUDGET * self.scale, self.start + self.budget)
        outcome = self.checked("demo-build", self.call("demo-build", self.python(code) + [str(target), "1"],
                                                       built_deadline))
        made = json.loads(outcome["text"].strip().splitlines()[-1])
        return Path(made["dir"]), {"demo_models": "built here", "build_s": round(made["seconds"], 1)}

    def step_demo(self, deadline: float) -> dict:
        try:
            models, info = self._demo_models(deadline)
        except StepSkipped as exc:
            return {"status": "skipped", "reason": str(exc)}
        if info["demo_models"] == "built here":  # the build had its own budget: the three audits get theirs
            deadline = min(self.start + self.budget, time.monotonic() + BUDGETS["demo"][0] * self.scale)
        runs = {"cpu_float32": ("cpu", "float32"), "dev_float32": (self.device, "float32"),
                "dev_bfloat16": (self.device, "bfloat16")}
        started = []
        outcomes = {}
        for label, (device, dtype) in runs.items():
            cache = self.work / f"cache-demo-{label}"
            cache.mkdir(parents=True)
            (cache / models.name).symlink_to(models.resolve(), target_is_directory=True)
            cmd = self.auditq("demo", "--device", device, "--dtype", dtype, "--out", str(self.work / f"out-demo-{label}"),
                              "--threads", str(self.threads), "-q")
            s = self.spawn(f"demo-{label}", cmd, self.env(AUDITQ_CACHE_DIR=str(cache)))
            if self.on_gpu and label == "cpu_float32":
                started.append(s)  # the CPU run overlaps the GPU runs (other resources)
            else:
                outcomes[label] = self.wait(s, deadline)
        for s in started:
            outcomes[s[0].removeprefix("demo-")] = self.wait(s, deadline)
        for label, outcome in outcomes.items():
            self.checked(f"auditq demo ({label})", outcome, allowed=(0, 1))
        reports = {label: _read_report(self.work / f"out-demo-{label}") for label in runs}
        ref = reports["cpu_float32"]
        result = {**info, "runs": {label: {"seconds": outcomes[label]["seconds"], "exit": outcomes[label]["rc"],
                                           "verdict": r["verdict"], "verdicts": r["verdicts"],
                                           "device_row": r["devices"]} for label, r in reports.items()}}
        for label in ("dev_float32", "dev_bfloat16"):
            result[f"{label}_vs_cpu_float32"] = _compare(ref, reports[label])
        fp32 = result["dev_float32_vs_cpu_float32"]
        result["checks"] = {
            "fp32_same_verdicts": fp32["same_verdicts"],
            f"fp32_mean_logp_within_{TOL_FP32:g}": None if fp32["max_abs_diff_loss"] is None
            else fp32["max_abs_diff_loss"] <= TOL_FP32,
            "bf16_same_verdicts": result["dev_bfloat16_vs_cpu_float32"]["same_verdicts"],
            "ran_on_device": all(self.device.split(":")[0] in str(d)
                                 for d in reports["dev_float32"]["devices"].values()) if self.on_gpu else None,
        }
        return result

    # -- bench_scale on real shapes

    def _bench(self, shape: str, deadline: float, keep: bool) -> dict:
        trio = self.work / f"trio-{shape}"
        figures_path = self.work / f"bench-{shape}.json"
        cmd = [sys.executable, str(REPO / "bench" / "bench_scale.py"), "--shape", shape, "--device", self.device,
               "--dtype", self.dtype, "--build-device", self.device if self.on_gpu else "cpu",
               "-f", "fp,rtn8,rtn4", "--threads", str(self.threads), "--workdir", str(trio), "--json", str(figures_path)]
        outcome = self.checked(f"bench_scale --shape {shape}", self.call(f"bench-{shape}", cmd, deadline))
        figures = json.loads(figures_path.read_text())
        if keep and not all((trio / role / "config.json").is_file() for role in ("base", "unlearned", "retrain")):
            keep = False
        if keep:
            self.trio = {role: str(trio / role) for role in ("base", "unlearned", "retrain")}
        else:
            shutil.rmtree(trio, ignore_errors=True)
        targets = figures.get("targets", {})
        checks = {"wall_le_1.3x_same_tokens_roofline": targets.get("wall_le_1.3x_same_tokens_roofline"),
                  "estimate_at_least_measured_peak": figures.get("estimate_is_over")}
        if self.on_gpu:
            checks["cuda_peak_le_1.3_model_plus_0.5"] = targets.get("cuda_peak_le_1.3_model_plus_0.5")
        else:
            checks["peak_rss_le_roofline_plus_0.3_model"] = targets.get("peak_rss_le_roofline_plus_0.3_model")
        return {"figures": figures, "checks": checks, "printed": outcome["tail"]}

    def step_bench_main(self, deadline: float) -> dict:
        return self._bench(self.shape, deadline, keep=True)

    def step_bench_7b(self, deadline: float) -> dict:
        if not self.on_gpu:
            return {"status": "skipped", "reason": "the 7B shape is a GPU check (3 × 13.5 GB bf16 trio)"}
        for path in self.work.glob("trio-*"):  # disk: the 7B trio is ~40 GB of the device's 64 GiB
            shutil.rmtree(path, ignore_errors=True)
        self.trio = None
        return self._bench("llama-2-7b", deadline, keep=False)

    # -- engines that build their own model, on the main trio

    def _need_trio(self) -> dict[str, str]:
        if self.trio is None:
            earlier = self.work / f"trio-{self.shape}"
            roles = {role: earlier / role for role in ("base", "unlearned", "retrain")}
            if not all((path / "config.json").is_file() and any(path.glob("*.safetensors")) for path in roles.values()):
                raise StepSkipped("no trio: the bench_main step did not run or failed, and no earlier run left one")
            self.trio = {role: str(path) for role, path in roles.items()}
            self.result["trio_reused"] = str(earlier)
        return self.trio

    def engine_step(self, name: str, fmt: str, deadline: float, extra: tuple[str, ...] = ()) -> dict:
        try:
            trio = self._need_trio()
        except StepSkipped as exc:
            return {"status": "skipped", "reason": str(exc)}
        out = self.work / f"out-{name}"
        cmd = self.auditq("check", trio["base"], trio["unlearned"], "-f", fmt, "--probes", "mia", "--no-cache",
                          "--device", self.device, "--dtype", self.dtype, "--threads", str(self.threads),
                          "--out", str(out), "-q", *extra)
        outcome = self.checked(f"auditq check -f {fmt}", self.call(name, cmd, deadline), allowed=REPORTED)
        report = _read_report(out)
        # every short detail of each row (kernel, backend, kernel_choice, device, dtype, native_library, ...)
        rows = {f["format"]: {k: v for k, v in f["details"].items() if len(json.dumps(v, default=str)) <= 400}
                | ({"error": f["error"]} if f.get("error") else {}) for f in report["raw"]["formats"]}
        row = rows.get(fmt, {})
        return {"exit": outcome["rc"], "seconds_audit": outcome["seconds"], "verdict": report["verdict"], "rows": rows,
                "checks": {"row_has_no_error": not any("error" in r for r in rows.values()),
                           "ran_on_device": (self.device.split(":")[0] in str(row.get("device", ""))
                                             if self.on_gpu else None),
                           "kernel_recorded": bool(row.get("kernel") or row.get("backend")
                                                   or row.get("engine") == "llama.cpp")}}

    def step_bnb_nf4(self, deadline: float) -> dict:
        return self.engine_step("bnb_nf4", "bnb:nf4", deadline)

    def step_gptq4(self, deadline: float) -> dict:
        try:
            import importlib.util

            if importlib.util.find_spec("gptqmodel") is None:
                return {"status": "not_checked", "reason": "gptqmodel is not installed here (its wheel did not "
                                                           "install; see install in this JSON)"}
        except (ImportError, ValueError) as exc:
            return {"status": "not_checked", "reason": f"gptqmodel cannot be found: {exc}"}
        fmt = "gptq4" if self.shape != "tiny" else "gptq4:g32"  # tiny's 64-wide layers: a group must fit
        return self.engine_step("gptq4", fmt, deadline)

    def step_device_map(self, deadline: float) -> dict:
        if not self.on_gpu:
            return {"status": "skipped", "reason": "--device-map auto spreads a model over GPUs; auditq refuses it "
                                                   "on a CPU-only machine (exit 2)"}
        try:
            trio = self._need_trio()
        except StepSkipped as exc:
            return {"status": "skipped", "reason": str(exc)}
        code = ("import json, sys, collections; from auditq.checkpoint.load import load_checkpoint; import torch; "
                "c = load_checkpoint(sys.argv[1], 'base', dtype=torch.bfloat16, device_map='auto'); "
                "m = getattr(c.model, 'hf_device_map', None) or {}; "
                "print(json.dumps({'entries': len(m), 'devices': dict(collections.Counter(str(v) for v in m.values())), "
                "'map': dict(list(m.items())[:40])}))")
        mapped = self.checked("device map", self.call("device_map-load", self.python(code) + [trio["base"]], deadline))
        device_map = json.loads(mapped["text"].strip().splitlines()[-1])
        out = self.work / "out-device_map"
        cmd = self.auditq("check", trio["base"], trio["unlearned"], "-f", "fp,rtn4", "--probes", "mia", "--no-cache",
                          "--device-map", "auto", "--dtype", self.dtype, "--threads", str(self.threads),
                          "--out", str(out), "-q")
        outcome = self.checked("auditq check --device-map auto", self.call("device_map", cmd, deadline), allowed=REPORTED)
        report = _read_report(out)
        return {"hf_device_map": device_map, "exit": outcome["rc"], "verdict": report["verdict"],
                "rows": report["devices"],
                "checks": {"map_on_gpu": bool(device_map["devices"]) and all(
                    d not in ("cpu", "disk") for d in device_map["devices"])}}

    def step_gguf_offload(self, deadline: float) -> dict:
        import importlib.util

        if importlib.util.find_spec("llama_cpp") is None:
            return {"status": "not_checked", "reason": "no CUDA build of llama-cpp-python available: the registry has "
                                                       "no CUDA wheel and it cannot be compiled with CUDA here"}
        code = "import llama_cpp, json; print(json.dumps(bool(llama_cpp.llama_supports_gpu_offload())))"
        probe = self.checked("llama_cpp", self.call("gguf-probe", self.python(code), deadline))
        gpu = json.loads(probe["text"].strip().splitlines()[-1])
        if self.on_gpu and not gpu:
            return {"status": "not_checked", "reason": "this llama-cpp-python was built without GPU support"}
        out = self.engine_step("gguf_offload", "gguf:q8_0", deadline)
        return {"llama_supports_gpu_offload": gpu, **out}


class StepFailed(Exception):
    def __init__(self, message: str, tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.tail = tail or []


class StepTimeout(StepFailed):
    pass


class StepSkipped(Exception):
    pass


class StepDeferred(Exception):
    pass


def _read_report(out: Path) -> dict:
    """verdicts per format/check, each row's device/dtype, and per-sample scores from an --out folder."""
    data = json.loads((out / "report.json").read_text())
    verdicts = {f["format"]: {c["check"]: c["verdict"] for c in f.get("checks", [])} for f in data["formats"]}
    devices = {f["format"]: f"{f['details'].get('device')} {f['details'].get('dtype', '')}".strip()
               for f in data["formats"]}
    samples = {}
    path = out / "samples.jsonl"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            s = json.loads(line)
            samples[(s["format"], s["role"], s["probe"], s["split"], s["id"])] = s
    return {"verdict": data["verdict"], "verdicts": verdicts, "devices": devices, "samples": samples, "raw": data}


def _compare(ref: dict, other: dict) -> dict:
    """Verdicts and per-sample scores of two audits of the same models (e.g. CPU float32 vs CUDA)."""
    diffs: dict[str, float] = {}
    over = 0
    generations = same_generations = 0
    for key, a in ref["samples"].items():
        b = other["samples"].get(key)
        if b is None:
            continue
        for score, value in a["scores"].items():
            other_value = b["scores"].get(score)
            if value is None or other_value is None:
                continue
            d = abs(float(value) - float(other_value))
            name = f"{key[2]}.{score}"
            diffs[name] = max(diffs.get(name, 0.0), d)
            if key[2] == "mia" and score == "loss" and d > TOL_FP32:
                over += 1
        if "generation" in a:
            generations += 1
            same_generations += a["generation"] == b.get("generation")
    changed = {f"{fmt}.{check}": (v, other["verdicts"].get(fmt, {}).get(check))
               for fmt, checks in ref["verdicts"].items() for check, v in checks.items()
               if other["verdicts"].get(fmt, {}).get(check) != v}
    return {"same_verdicts": ref["verdict"] == other["verdict"] and not changed,
            "verdict": [ref["verdict"], other["verdict"]], "changed_checks": changed,
            "samples_compared": len(set(ref["samples"]) & set(other["samples"])),
            "max_abs_diff_loss": diffs.get("mia.loss"), "samples_loss_over_tolerance": over,
            "max_abs_diff_by_score": {k: round(v, 8) for k, v in sorted(diffs.items())},
            "generations_identical": f"{same_generations}/{generations}"}


def main() -> int:
    if "OUT" not in os.environ:
        sys.exit("set OUT to the folder the JSON and the log go to")
    return Runner().run()


if __name__ == "__main__":
    sys.exit(main())
