"""How long `auditq check` (and `remediate`) take to refuse a bad input (issue 11: under 2 s, before any heavy
import).

Builds a tiny checkpoint pair and suite, breaks copies of them, and times the installed `auditq` in a
subprocess (wall clock, best and median of REPEATS runs). Prints one line per case with the start of the
refusal. Usage:

    python3 bench/bench_refusal.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "validate"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from helpers import build_world, copy, rewrite_tensors, weights

    auditq = shutil.which("auditq") or str(Path(sys.executable).parent / "auditq")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        world = build_world(tmp / "world")
        truncated = copy(world["unlearned"], tmp / "truncated")
        weights(truncated).write_bytes(weights(truncated).read_bytes()[:-100])
        missing = copy(world["unlearned"], tmp / "missing")
        rewrite_tensors(missing, lambda t: t.pop("model.layers.1.mlp.down_proj.weight"))
        reshaped = copy(world["unlearned"], tmp / "reshaped")
        rewrite_tensors(reshaped, lambda t: t.__setitem__("model.norm.weight", t["model.norm.weight"][:-1].clone()))
        base_missing = copy(world["base"], tmp / "base-missing")
        rewrite_tensors(base_missing, lambda t: t.pop("model.layers.1.mlp.down_proj.weight"))
        bad_suite = copy(world["suite"], tmp / "bad-suite")
        (bad_suite / "suite.toml").write_text('[probes]\nprefix_tokens = "16"\n')
        base, unl, suite = str(world["base"]), str(world["unlearned"]), str(world["suite"])
        cases = {
            "truncated safetensors (light stage)": [base, str(truncated), "--suite", suite],
            "suite.toml prefix_tokens = \"16\" (light)": [base, unl, "--suite", str(bad_suite)],
            "--out inside BASE (light)": [base, unl, "--suite", suite, "--out", f"{base}/reports"],
            "--probes , (light)": [base, unl, "--suite", suite, "--probes", ","],
            "-f rtn4:g0 (light)": [base, unl, "--suite", suite, "-f", "rtn4:g0"],
            "-f fp,gguf:q9_z (light)": [base, unl, "--suite", suite, "-f", "fp,gguf:q9_z"],
            "-f gptq4:g7 (light)": [base, unl, "--suite", suite, "-f", "gptq4:g7"],
            "-f bnb:nf4+relearn:retain (light, stack rule)": [base, unl, "--suite", suite, "-f", "bnb:nf4+relearn:retain"],
            "-f fp8+rtn4:g0 (light, bad stacked part)": [base, unl, "--suite", suite, "-f", "fp8+rtn4:g0"],
            "UNLEARNED lacks a tensor of BASE (light)": [base, str(missing), "--suite", suite],
            "UNLEARNED tensor shape != BASE (light)": [base, str(reshaped), "--suite", suite],
            "tensor missing in both (meta-device check)": [str(base_missing), str(missing), "--suite", suite],
            "remediate: RETRAIN lacks a tensor (light)":
                ["remediate", base, "--retrain", str(missing), "--suite", suite, "--dry-run"],
            "remediate: -f fp,gguf:q9_z (light)": ["remediate", base, "--suite", suite, "--dry-run", "-f", "fp,gguf:q9_z"],
        }
        print(f"auditq refusals, {args.repeats} runs each, installed CLI in a subprocess ({auditq})")
        for name, case in cases.items():
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                command = case if case[0] == "remediate" else ["check", *case]
                proc = subprocess.run([auditq, *command], capture_output=True, text=True)
                times.append(time.perf_counter() - start)
                assert proc.returncode == 2, proc.stderr
            said = proc.stderr.strip().removeprefix("auditq: error: ")
            print(f"{name:48s} exit 2  best {min(times):5.2f} s  median {statistics.median(times):5.2f} s  "
                  f"{said[:90]}{'...' if len(said) > 90 else ''}")


if __name__ == "__main__":
    main()
