"""Turn the conformance matrix's JSON (AUDITQ_MATRIX_OUT) into the markdown table of docs/conformance.md.

    AUDITQ_MATRIX_OUT=/tmp/matrix.json python3 -m pytest -m slow tests/formats/test_conformance_matrix.py
    python3 bench/conformance_table.py /tmp/matrix.json [more.json ...] > table.md

Cell legend: ``✓ x`` measured (x = max |Δ log p| vs the fp model over the scored texts: for gguf:f32 that is
the converter's parity, elsewhere what the format changed), ``✓* x`` measured but the cell's assertion
failed, ``R n`` refused (reason n below), ``E n`` crashed (reason n below), ``·`` not run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _figure(cell: dict) -> str:
    value = cell.get("max_abs_dlogp")
    return "" if value is None else (f"{value:.0e}" if value else "0")


def render(data: dict) -> str:
    """Markdown: one row per architecture, one column per format, numbered reasons underneath."""
    cells = {(c["arch"], c["format"]): c for c in data["cells"]}
    formats, archs = data["formats"], data["archs"]
    reasons: list[str] = []
    lines = ["| arch | " + " | ".join(f"`{f}`" for f in formats) + " |",
             "|---|" + "---|" * len(formats)]
    for arch in archs:
        row = []
        for fmt in formats:
            cell = cells.get((arch, fmt))
            if cell is None:
                row.append("·")
            elif cell["status"] == "measured":
                row.append(("✓* " if cell.get("failed") else "✓ ") + _figure(cell))
                if cell.get("failed"):
                    reasons.append(f"{arch} × {fmt}: assertion failed: {cell['failed']}")
                    row[-1] += f" ({len(reasons)})"
            else:
                reasons.append(f"{arch} × {fmt}: {cell.get('reason', '?')}")
                row.append(f"{'R' if cell['status'] == 'refused' else 'E'} {len(reasons)}")
        lines.append(f"| {arch} | " + " | ".join(row) + " |")
    if reasons:
        lines += ["", *[f"{i}. {r}" for i, r in enumerate(reasons, 1)]]
    fallbacks = _fallbacks(data["cells"])
    if fallbacks:
        lines += ["", "GGUF tensor types llama.cpp actually wrote (K-quant fallbacks at these widths):", "",
                  *fallbacks]
    return "\n".join(lines) + "\n"


def _fallbacks(cells: list[dict]) -> list[str]:
    out = []
    for cell in cells:
        types = cell.get("tensor_types")
        if cell["format"].startswith("gguf:q") and types:
            summary = types if isinstance(types, str) else json.dumps(types, sort_keys=True)
            out.append(f"- {cell['arch']} × {cell['format']}: {summary}")
    return out


def merge(parts: list[dict]) -> dict:
    """Several runs' JSON (e.g. -k gguf and -k 'not gguf') as one: later cells win, axes keep the first order."""
    formats, archs, cells = [], [], {}
    for part in parts:
        formats += [f for f in part["formats"] if f not in formats]
        archs += [a for a in part["archs"] if a not in archs]
        cells.update({(c["arch"], c["format"]): c for c in part["cells"]})
    return {"formats": formats, "archs": archs, "cells": list(cells.values())}


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: conformance_table.py MATRIX.json [MORE.json ...]", file=sys.stderr)
        return 2
    parts = []
    for name in argv:
        try:
            parts.append(json.loads(Path(name).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            print(f"cannot read {name}: {exc}", file=sys.stderr)
            return 2
    sys.stdout.write(render(merge(parts)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
