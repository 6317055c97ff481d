"""samples.jsonl: every probed sample's scores and generations, one JSON object per line."""

from __future__ import annotations

import json
import math


def render_samples(runs) -> str:
    lines = []
    for run in runs:
        for probe, output in run.outputs.items():
            for sample in output.samples:
                scores = {k: (round(float(v), 6) if math.isfinite(float(v)) else None) for k, v in sample.scores.items()}
                record = {"format": run.format, "role": run.role, "probe": probe, "split": sample.split,
                          "id": sample.record_id, "scores": scores}
                for key in ("prompt", "generation", "reference"):
                    value = getattr(sample, key)
                    if value is not None:
                        record[key] = value
                lines.append(json.dumps(record, ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")
