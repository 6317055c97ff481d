"""How long `auditq check` takes to refuse a bad input (issue 11: under 2 s, before any heavy import).

Builds a tiny checkpoint pair and suite, breaks copies of them, and times the installed `auditq` in a
subprocess (wall clock, best and median of REPEATS runs). Prints one line per case. Usage:

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
sys.path.insert(0, str(HERE.parent / "tests" / "validation"))


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
        bad_suite = copy(world["suite"], tmp / "bad-suite")
        (bad_suite / "suite.toml").write_text('[probes]\nprefix_tokens = "16"\n')
        base, unl, suite = str(world["base"]), str(world["unlearned"]), str(world["suite"])
        cases = {
            "truncated safetensors (light stage)": [base, str(truncated), "--suite", suite],
            "suite.toml prefix_tokens = \"16\" (light)": [base, unl, "--suite", str(bad_suite)],
            "--out inside BASE (light)": [base, unl, "--suite", suite, "--out", f"{base}/reports"],
            "--probes , (light)": [base, unl, "--suite", suite, "--probes", ","],
            "-f rtn4:g0 (after torch import)": [base, unl, "--suite", suite, "-f", "rtn4:g0"],
            "missing tensor (meta-device check)": [base, str(missing), "--suite", suite],
        }
        print(f"auditq check refusals, {args.repeats} runs each, installed CLI in a subprocess ({auditq})")
        for name, case in cases.items():
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                proc = subprocess.run([auditq, "check", *case], capture_output=True, text=True)
                times.append(time.perf_counter() - start)
                assert proc.returncode == 2, proc.stderr
            print(f"{name:45s} exit 2  best {min(times):5.2f} s  median {statistics.median(times):5.2f} s")


if __name__ == "__main__":
    main()
