"""The installed `auditq` in a subprocess with a clean environment: refusals exit 2 with one line, before
torch is imported; Ctrl-C at any moment exits 130 and leaves no --out (issue 11 findings 2 and 4)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import build_world, copy, rewrite_tensors, weights

AUDITQ = shutil.which("auditq") or str(Path(sys.executable).parent / "auditq")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("world-sub"))


def clean_env(tmp: Path) -> dict[str, str]:
    """What a CI runner has: PATH, HOME and a cache dir; nothing auditq needs from the test."""
    return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp / "home"),
            "AUDITQ_CACHE_DIR": str(tmp / "cache"), "LANG": "C.UTF-8"}


def _broken(world, tmp, kind):
    unlearned = copy(world["unlearned"], tmp / "unlearned")
    suite = copy(world["suite"], tmp / "suite")
    if kind == "truncated":
        weights(unlearned).write_bytes(weights(unlearned).read_bytes()[:-50])
    elif kind == "suite_type":
        (suite / "suite.toml").write_text('[probes]\nprefix_tokens = "16"\n')
    elif kind == "missing_tensor":
        rewrite_tensors(unlearned, lambda t: t.pop("model.layers.1.mlp.down_proj.weight"))
    return unlearned, suite


@pytest.mark.parametrize("kind, extra, expected", [
    ("truncated", [], "outside the"),
    ("suite_type", [], "prefix_tokens = '16'"),
    ("none", ["--probes", ","], "--probes"),
    ("none", ["--out", "BASE/reports"], "overlaps the input"),
    ("none", ["--seed", "abc"], "Invalid value for '--seed'"),  # click's usage errors are one line too
])
def test_installed_cli_refuses_with_one_line(world, tmp_path, kind, extra, expected):
    unlearned, suite = _broken(world, tmp_path, kind)
    extra = [e.replace("BASE", str(world["base"])) for e in extra]
    out = tmp_path / "out"
    args = [AUDITQ, "check", str(world["base"]), str(unlearned), "--suite", str(suite), "-f", "fp"]
    if "--out" not in extra:
        args += ["--out", str(out)]
    proc = subprocess.run(args + extra, env=clean_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and not out.exists()
    assert not (world["base"] / "reports").exists()


@pytest.mark.parametrize("kind, extra, expected", [
    ("truncated", [], "outside the"),
    ("none", ["-f", "fp,gguf:q9_z"], "--formats gguf:q9_z: unknown GGUF type"),
    ("none", ["-f", "gptq4:g7"], "--formats gptq4:g7: group size must be a power of two"),
    ("none", ["-f", "fp8+rtn4:g0"], "--formats fp8+rtn4:g0: rtn4:g0: group size 0"),
    ("missing_tensor", [], "lacks 1 tensor(s) of base (model.layers.1.mlp.down_proj.weight"),
])
def test_refusal_imports_neither_torch_nor_transformers(world, tmp_path, kind, extra, expected):
    unlearned, suite = _broken(world, tmp_path, kind)
    _refused_before_heavy_imports(["check", str(world["base"]), str(unlearned), "--suite", str(suite), *extra],
                                  tmp_path, expected)


def _refused_before_heavy_imports(argv: list[str], tmp_path, expected: str) -> None:
    """The installed entry point refuses `argv` with exit 2 and one line holding `expected`, torch unimported."""
    code = ("import sys\nfrom auditq.entry import main\n"
            f"sys.argv = ['auditq', *{argv!r}]\n"
            "try:\n    main()\nfinally:\n"
            "    print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules), file=sys.stdout)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=clean_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5, 3.0, 6.0])
def test_ctrl_c_at_any_moment_exits_130(world, tmp_path, delay):
    out = tmp_path / "out"
    proc = subprocess.Popen([AUDITQ, "check", str(world["base"]), str(world["unlearned"]), "--suite",
                             str(world["suite"]), "-f", "fp,rtn8", "-q", "--threads", "1", "--out", str(out)],
                            env=clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    if proc.poll() is not None:
        pytest.skip(f"the audit finished within {delay} s")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging dir left


def _startup_outcome(code: int, out: str, err: str) -> str:
    """Who handled a Ctrl-C sent while `auditq version` starts (bench/bench_sigint.py measures the windows)."""
    if code == 130:
        assert err.strip() == "auditq: interrupted; nothing was written", err  # auditq's handler: one line
        return "auditq"
    auditq_frames = [line for line in err.splitlines() if "/auditq/" in line and line.strip().startswith("File")]
    assert not auditq_frames, err  # never a traceback from auditq's own code
    if code == -signal.SIGINT:  # killed by SIGINT (a shell shows 130): before CPython's handler, or at its exit
        return "killed"
    if code == 0 and out.strip() and not err.strip():
        return "finished"  # the signal came after the command was done
    cpython_failed = code == 1 and ("Fatal Python error: init_" in err or "failed to set __main__.__loader__" in err)
    cpython_ignored = code == 0 and "KeyboardInterrupt" in err and ("Exception ignored" in err or "Failed checking" in err)
    assert cpython_failed or cpython_ignored, (code, err)
    return "cpython"  # CPython's own startup (streams, site, the script's loader), before any auditq code runs


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03, 0.06, 0.1, 0.2, 0.4])
def test_ctrl_c_during_startup_is_auditqs_130_or_cpythons_own(tmp_path, delay):
    proc = subprocess.Popen([AUDITQ, "version"], env=clean_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    _startup_outcome(proc.returncode, out, err)


_SWALLOWED = """
import os, signal
import auditq.entry
import auditq.cli.app

def swallowing_main():  # a press that something swallows (a __del__, a weakref callback) on the way
    try:
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(100000))
    except BaseException:
        pass
    print("finished")

auditq.cli.app.main = swallowing_main
auditq.entry.main()
"""


def test_a_swallowed_ctrl_c_still_exits_130_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _SWALLOWED], env=clean_env(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 130 and proc.stderr.strip() == "auditq: interrupted; nothing was written", proc


def test_importing_the_entry_point_installs_the_handler_and_the_library_does_not(tmp_path):
    code = ("import signal\nimport auditq.interrupt, auditq.validate.inputs, auditq.formats\n"
            "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
            "import auditq.entry\nassert auditq.interrupt.installed()\n")
    proc = subprocess.run([sys.executable, "-c", code], env=clean_env(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("kind, extra, expected", [
    ("missing_tensor", ["--retrain", "UNLEARNED", "--dry-run"], "retrain checkpoint UNLEARNED lacks 1 tensor(s) of base"),
    ("none", ["--dry-run", "-f", "fp,gguf:q9_z"], "--formats gguf:q9_z: unknown GGUF type"),
    ("none", ["--out", "BASE"], "overlaps the input"),
])
def test_remediate_refusal_imports_neither_torch_nor_transformers(world, tmp_path, kind, extra, expected):
    unlearned, suite = _broken(world, tmp_path, kind)
    names = {"BASE": str(world["base"]), "UNLEARNED": str(unlearned)}
    extra = [names.get(e, e) for e in extra]
    _refused_before_heavy_imports(["remediate", str(world["base"]), "--suite", str(suite), *extra], tmp_path,
                                  expected.replace("UNLEARNED", str(unlearned)))


_EARLY = """
import os, signal, sys
import auditq.entry  # what the console script does first; its own code runs before it calls main()
os.kill(os.getpid(), signal.SIGINT)
sum(range(100000))  # the press lands here: recorded, not raised (it would escape the script as a traceback)
print("still running")
auditq.entry.main()
"""


def test_a_press_before_main_runs_is_recorded_then_exits_130(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _EARLY], env=clean_env(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 130 and proc.stderr.strip() == "auditq: interrupted; nothing was written", proc
    assert proc.stdout.strip() == "still running"
