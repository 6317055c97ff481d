"""What Ctrl-C in the first fraction of a second does to the installed `auditq` (issue 11 finding 4).

Sends SIGINT to `auditq version` in a subprocess at fixed delays after the process is spawned, REPEATS times
each, and counts the outcomes by who handled the signal:

- ``killed``      no output, killed by SIGINT (returncode -2; a shell shows 130): before CPython installs
                  its own handler;
- ``killed-at-exit`` the same after the command printed its output: CPython's shutdown (handlers reset);
- ``cpython-1``   exit 1, "Fatal Python error: init_..." or "failed to set __main__.__loader__": CPython's own
                  startup (streams, site import, the script's loader);
- ``cpython-ign`` a KeyboardInterrupt CPython's startup ignored ("Exception ignored", "Failed checking if
                  argv[0] is an import path entry") and the command ran on;
- ``kbd-tb``      killed by SIGINT with a KeyboardInterrupt traceback from importlib looking for the auditq
                  package: after site, before any auditq code (``kbd-tb-in-auditq``: inside auditq's code);
- ``auditq-130``  exit 130 with auditq's one line: auditq.entry's handler;
- ``done``        the command finished before the signal arrived; anything else is printed in full.

Also prints how long CPython's `import site` and `import auditq.entry` take here (python -X importtime).
Usage: python3 bench/bench_sigint.py [--repeats 10] [--random 200]
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

DELAYS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3)


CPYTHON_STARTUP = ("Fatal Python error: init_", "failed to set __main__.__loader__")


def classify(code: int, out: str, err: str) -> str:
    if code == 130 and err.strip() == "auditq: interrupted; nothing was written":
        return "auditq-130"
    if code == -signal.SIGINT and not err.strip():
        return "killed-at-exit" if out.strip() else "killed"
    if code == 1 and any(m in err for m in CPYTHON_STARTUP):
        return "cpython-1"
    if code == 0 and "KeyboardInterrupt" in err and ("Exception ignored" in err or "Failed checking" in err):
        return "cpython-ign"
    if code == -signal.SIGINT and err.rstrip().endswith("KeyboardInterrupt"):
        in_auditq = any("/auditq/" in line for line in err.splitlines() if line.strip().startswith("File"))
        return "kbd-tb-in-auditq" if in_auditq else "kbd-tb"
    if code == 0 and not err.strip():
        return "done"
    return f"OTHER rc={code}"


def import_ms(code: str, module: str) -> float:
    """Cumulative import time of `module` (ms) from python -X importtime -c CODE."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    times = [int(m.group(1)) for m in re.finditer(rf"\|\s*(\d+)\s*\|\s*{re.escape(module)}$", proc.stderr, re.M)]
    return max(times) / 1000 if times else float("nan")


def run_once(auditq: str, delay: float) -> tuple[str, str]:
    proc = subprocess.Popen([auditq, "version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return classify(proc.returncode, out, err), err


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--random", type=int, default=200, help="then this many runs at uniform random delays 0-300 ms")
    args = parser.parse_args()
    auditq = shutil.which("auditq") or str(Path(sys.executable).parent / "auditq")
    print(f"import site: {import_ms('pass', 'site'):.1f} ms; import auditq.entry: "
          f"{import_ms('import auditq.entry', 'auditq.entry'):.1f} ms (python -X importtime)")
    print(f"SIGINT to `{auditq} version` after a delay, {args.repeats} runs each")
    others = []
    for delay in DELAYS:
        counts: collections.Counter[str] = collections.Counter()
        for _ in range(args.repeats):
            kind, err = run_once(auditq, delay)
            counts[kind] += 1
            if kind.startswith("OTHER") or kind == "kbd-tb-in-auditq":
                others.append((delay, kind, err[-800:]))
        print(f"{delay * 1000:6.0f} ms  " + "  ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    rng, counts = random.Random(0), collections.Counter()
    for _ in range(args.random):
        kind, err = run_once(auditq, rng.uniform(0.0, 0.3))
        counts[kind] += 1
        if kind.startswith("OTHER") or kind == "kbd-tb-in-auditq":
            others.append(("random", kind, err[-800:]))
    print(f"{args.random} runs at random delays 0-300 ms: " + "  ".join(f"{k} {n}" for k, n in sorted(counts.items())))
    for delay, code, err in others:
        print(f"--- {code} at {delay if isinstance(delay, str) else f'{delay * 1000:.0f} ms'}:\n{err}")


if __name__ == "__main__":
    main()
