"""Benchmark `auditq check` on the demo pair: seconds per stage and peak memory.

Usage: python bench/bench_check.py [--formats fp,rtn8,rtn4] [--threads 2]
Prints figures; it asserts nothing (speed targets are read, not tested).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--formats", default="fp,rtn8,rtn4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--unlearned", default="fragile", choices=["fragile", "honest", "retrain"])
    args = parser.parse_args()

    import torch

    from auditq.audit.pipeline import run_audit
    from auditq.audit.request import audit_request
    from auditq.demo.build import build_demo

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    models = build_demo(log=lambda m: print(f"  {m}", file=sys.stderr))
    build_s = time.perf_counter() - start
    request = audit_request(base=models.base, unlearned=getattr(models, args.unlearned), retrain=models.retrain,
                            suite=models.suite, formats=tuple(args.formats.split(",")))
    start = time.perf_counter()
    outcome = run_audit(request)
    total = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"demo build (or cache hit): {build_s:8.2f} s")
    print(f"check total:               {total:8.2f} s   verdict {outcome.report.verdict}")
    for stage, seconds in sorted(outcome.timings.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<28} {seconds:8.2f} s")
    print(f"peak resident memory:      {peak_mib:8.1f} MiB")
    print(f"torch threads:             {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
