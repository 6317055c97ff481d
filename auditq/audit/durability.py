"""Durability over seeds in the report: each repeated format's per-seed verdicts, worst and pass rate.

`--seeds N` adds a row per extra seed for every stochastic format (auditq.formats.seeded). Here each group of
rows that repeat one format gets, in every row's details, ``durability`` = {seed: verdict, ...}, the pass
rate (DurableUn's "3/3": a method passes only if it passes under every seed) and the worst verdict, and the
group's first row a note saying so (shown under the report's table). The overall gate is unchanged: it
already takes the worst verdict over every row, so a format is PASS only if every seed is.
"""

from __future__ import annotations

from dataclasses import replace

from auditq.formats.seeded import base_name
from auditq.result.model import FAIL, INCONCLUSIVE, PASS, UNKNOWN, FormatResult
from auditq.verdict.policy import gate

_ORDER = (FAIL, UNKNOWN, INCONCLUSIVE, PASS)


def row_verdict(row: FormatResult) -> str:
    """One row's verdict from its gating checks, as the overall gate reads them (WAIVED passes)."""
    return gate(list(row.checks), allow_inconclusive=False)[0]


def annotate(results: list[FormatResult], seed: int) -> list[FormatResult]:
    """`results` with every repeated format's rows carrying the group's durability summary."""
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(results):
        groups.setdefault(base_name(row.format), []).append(index)
    out = list(results)
    for name, indices in groups.items():
        if len(indices) < 2:
            continue
        # the first row runs under --seed itself, each repeat under the seed in its details (auditq.formats.seeded)
        seeds = [results[i].details.get("seed", seed + position) for position, i in enumerate(indices)]
        verdicts = {str(s): row_verdict(results[i]) for s, i in zip(seeds, indices)}
        passed = sum(v == PASS for v in verdicts.values())
        worst = next(v for v in _ORDER if v in verdicts.values())
        summary = {"format": name, "verdicts": verdicts, "passed": passed, "seeds": len(indices),
                   "pass_rate": f"{passed}/{len(indices)}", "worst": worst}
        note = (f"durability over {len(indices)} seeds: {passed}/{len(indices)} PASS, worst {worst} "
                f"(per seed: {', '.join(f'{s} {v}' for s, v in verdicts.items())})")
        for position, i in enumerate(indices):
            details = {**results[i].details, "seed": seeds[position], "durability": summary}
            if position == 0:
                details["note"] = "; ".join(x for x in (details.get("note"), note) if x)
            out[i] = replace(results[i], details=details)
    return out
