"""How long the installed `auditq` takes to refuse the named examples of issue 24 classes 4 (input errors
that used to be found mid-audit) and 8 (refusals that used to take 8-197 s). Targets: under 2 s for a
refusal that needs no model class (all of these), under 5 s otherwise.

Builds the tiny world of tests/validate (helpers.build_world), breaks a copy per case
(tests/validate/hostile_cases.py, the same builders the tests use), and times `auditq` in a subprocess
with a clean environment: best and median of REPEATS runs. Usage:

    python3 bench/bench_refusal_hostile.py [--repeats 3]
"""

from __future__ import annotations

import argparse
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
    from helpers import build_world, copy
    from hostile_cases import CLASS4, CLASS8

    auditq = str(Path(sys.executable).parent / "auditq")  # the one installed with this Python, not PATH's
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        world = build_world(tmp / "world")
        for label, table in (("class 4", CLASS4), ("class 8", CLASS8)):
            for name, builder in table.items():
                case_dir = tmp / name
                b, u, s = (copy(world[k], case_dir / k) for k in ("base", "unlearned", "suite"))
                case = builder(b, u, s, case_dir)
                roles = [str(b), str(u)] if case.command == "check" else [str(b)]
                argv = [auditq, case.command, *roles, "--suite", str(s), "--out", str(case_dir / "out"), *case.args]
                env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(case_dir / "home"),
                       "AUDITQ_CACHE_DIR": str(case_dir / "cache"), "LANG": "C.UTF-8", **case.env}
                times, line, code = [], "", None
                for _ in range(args.repeats):
                    start = time.monotonic()
                    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
                    times.append(time.monotonic() - start)
                    code, line = proc.returncode, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
                print(f"{label}  {name:28s} exit {code}  best {min(times):5.2f} s  median "
                      f"{statistics.median(times):5.2f} s  {line[:110]}", flush=True)


if __name__ == "__main__":
    main()
