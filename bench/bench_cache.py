"""Benchmark the result cache: cold vs warm `auditq check` on the demo pair.

Usage: python bench/bench_cache.py [--formats fp,rtn8,rtn4] [--threads 1] [--tiny]

Prints, for the same audit:
- in-process `run_audit` seconds, cold (empty cache) and warm (everything cached), and with a
  different unlearned model against the same base (the base rows come from the cache);
- end-to-end `auditq check --out` seconds in a fresh process (imports included), cold and warm;
and whether the warm verdicts equal the cold ones. The demo models come from
`auditq.demo.build.build_demo()` (built once and cached); without it, or with --tiny, two tiny
random Llama checkpoints are built here and audited on the bundled demo suite. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _demo_models(tiny: bool, scratch: Path):
    """(base, unlearned, other unlearned or None, retrain or None, suite, label)."""
    if not tiny:
        try:
            from auditq.demo.build import build_demo
        except ImportError:
            print("auditq.demo.build is not available: using tiny random checkpoints", file=sys.stderr)
        else:
            models = build_demo(log=lambda m: print(f"  {m}", file=sys.stderr))
            return (models.base, models.fragile, getattr(models, "honest", None), models.retrain, models.suite,
                    "demo pair (fragile vs base, retrain as reference)")
    sys.path.insert(0, str(ROOT / "tests"))
    from formats.gguf_helpers import build_llama_checkpoint

    from auditq.suite.records import bundled_suite_dir

    base = build_llama_checkpoint(scratch / "base", hidden=128, intermediate=384, seed=0)
    unlearned = build_llama_checkpoint(scratch / "unlearned", hidden=128, intermediate=384, seed=1)
    other = build_llama_checkpoint(scratch / "other", hidden=128, intermediate=384, seed=2)
    return base, unlearned, other, None, bundled_suite_dir(), "tiny random Llama pair (hidden 128) on the demo suite"


def _verdicts(report):
    return [(c.format, c.check, c.verdict, c.value, c.ci_low, c.ci_high) for c in report.all_checks()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--formats", default="fp,rtn8,rtn4")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="tiny random checkpoints instead of the demo models")
    args = parser.parse_args()

    import torch

    from auditq.audit.pipeline import run_audit
    from auditq.audit.request import audit_request
    from auditq.cache.store import ResultCache

    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="auditq-bench-cache-"))
    base, unlearned, other, retrain, suite, label = _demo_models(args.tiny, scratch)
    formats = tuple(args.formats.split(","))
    print(f"{label}; formats {','.join(formats)}; torch threads {args.threads}")

    def audit(cache_dir: Path, target: Path):
        cache = ResultCache(cache_dir)
        request = audit_request(base=base, unlearned=target, retrain=retrain, suite=suite, formats=formats, cache=cache)
        start = time.perf_counter()
        outcome = run_audit(request)
        return time.perf_counter() - start, outcome, cache

    cache_dir = scratch / "results"
    cold_s, cold, c1 = audit(cache_dir, unlearned)
    warm_s, warm, c2 = audit(cache_dir, unlearned)
    same = _verdicts(cold.report) == _verdicts(warm.report)
    print("in-process run_audit:")
    print(f"  cold  {cold_s:8.2f} s   ({c1.misses} probe outputs measured)   verdict {cold.report.verdict}")
    print(f"  warm  {warm_s:8.2f} s   ({c2.hits} re-used, {c2.misses} measured)   verdict {warm.report.verdict}"
          f"   speed-up {cold_s / warm_s:5.1f}x   identical verdicts: {same}")
    if other is not None:
        new_s, _, c3 = audit(cache_dir, other)
        print(f"  new unlearned model, same base: {new_s:8.2f} s   ({c3.hits} re-used, {c3.misses} measured)"
              f"   {cold_s / new_s:4.1f}x")

    env = {**os.environ, "AUDITQ_CACHE_DIR": str(scratch / "cli-cache")}
    command = [sys.executable, "-m", "auditq", "check", str(base), str(unlearned), "--suite", str(suite),
               "-f", ",".join(formats), "--threads", str(args.threads), "-q"]
    if retrain is not None:
        command += ["--retrain", str(retrain)]
    timings = []
    for run in ("cold", "warm"):
        start = time.perf_counter()
        done = subprocess.run(command + ["--out", str(scratch / f"cli-{run}")], env=env, capture_output=True, text=True)
        timings.append(time.perf_counter() - start)
        if done.returncode not in (0, 1, 3):
            print(done.stderr.strip().splitlines()[-1:] if done.stderr else "", file=sys.stderr)
    print("end-to-end `auditq check --out` (new process, imports and model loading included):")
    print(f"  cold  {timings[0]:8.2f} s")
    print(f"  warm  {timings[1]:8.2f} s   speed-up {timings[0] / timings[1]:5.1f}x")
    print(f"scratch dir: {scratch}")


if __name__ == "__main__":
    main()
