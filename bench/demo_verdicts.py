"""Print the demo's verdict figures (the README's demo and verdicts tables) from a real audit.

Usage: python bench/demo_verdicts.py [--unlearned fragile|honest|retrain] [--no-retrain]
                                     [--formats fp,rtn8,rtn4] [--bios-only] [--cache DIR]

Builds (or reuses) the demo models with `auditq.demo.build.build_demo` (default: the user cache; --cache DIR
for another, e.g. .pytest_cache/auditq-demo), audits one of them against base with `run_audit`, and prints
per format and model the forget / holdout means, then every check with its value, interval, threshold and
message (floored retention with its raw ratio and floor; MUSE's PrivLeak with its AUCs). --bios-only audits on
the templated part of the demo suite (bios and their QA, no prose). Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from demo_suites import bios_only  # noqa: E402  (one copy of the suite variants, shared with the e2e tests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unlearned", default="fragile", choices=("fragile", "honest", "retrain"))
    parser.add_argument("--no-retrain", action="store_true")
    parser.add_argument("--formats", default="fp,rtn8,rtn4")
    parser.add_argument("--bios-only", action="store_true")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from auditq.audit.pipeline import run_audit
    from auditq.audit.request import audit_request
    from auditq.demo.build import build_demo
    from auditq.verdict.scoring import collect_samples

    models = build_demo(cache_dir=args.cache)
    with tempfile.TemporaryDirectory() as scratch:
        suite = bios_only(models.suite, Path(scratch) / "bios") if args.bios_only else models.suite
        start = time.perf_counter()
        outcome = run_audit(audit_request(base=models.base, unlearned=getattr(models, args.unlearned),
                                          retrain=None if args.no_retrain else models.retrain, suite=suite,
                                          formats=tuple(args.formats.split(","))))
        seconds = time.perf_counter() - start
    report = outcome.report
    print(f"{args.unlearned} vs base, retrain {'no' if args.no_retrain else 'yes'}, suite "
          f"{'bios only' if args.bios_only else 'demo'}: {report.verdict} (exit {report.exit_code}), {seconds:.0f} s")
    for run in outcome.runs:
        if run.error:
            print(f"  {run.format:8} {run.role:9} error: {run.error}")
            continue
        s = collect_samples(run.outputs, None)
        mean = lambda a: "  n/a" if a is None else f"{a.mean():.3f}"  # noqa: E731
        print(f"  {run.format:8} {run.role:9} VerbMem forget {mean(s.verbmem_forget)} holdout {mean(s.verbmem_holdout)}"
              f" | KnowMem forget {mean(s.knowmem_forget)} holdout {mean(s.knowmem_holdout)} retain "
              f"{mean(s.knowmem_retain)}")
    for fmt in report.formats:
        for c in fmt.checks:
            interval = "" if c.ci_low is None else f" [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
            value = "n/a" if c.value is None else f"{c.value:+.3f}"
            print(f"  {fmt.format:8} {c.check:26} {c.verdict:12} {value}{interval} (threshold {c.threshold:.3f}) "
                  f"{c.message}")


if __name__ == "__main__":
    main()
