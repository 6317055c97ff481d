"""Write probes/demo-tofu: the bundled demo suite with TOFU's paraphrased / perturbed answers on every QA record.

The records (texts, questions, answers) are the demo suite's, byte for byte, so the prebuilt demo models
(base, fragile, honest, retrain) can be audited with the tofu probe; the demo suite itself is left alone
(its hash keys the demo build). For each QA record:

- paraphrased_answer: the fact in the words of the biography ("born in 1943", "works as a notary", ...),
  a form the question's answer never took in training;
- perturbed_answers: the same form with the answers of the next five records of the same question type
  in the same split (TOFU ships five perturbed answers per question): wrong, same template.

Run from the repository root: python examples/tofu/make_demo_tofu.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE, TARGET = ROOT / "probes" / "demo", ROOT / "probes" / "demo-tofu"
#: question type (the id's last part) -> the form of a paraphrased / perturbed answer
FORMS = {"year": "born in {}", "birthplace": "born in {}", "occupation": "works as a {}",
         "employer": "works for {}", "pet": "keeps a pet named {}"}
N_PERTURBED = 5


def tofu_records(lines: list[str]) -> list[str]:
    records = [json.loads(line) for line in lines if line.strip()]
    by_type: dict[str, list[str]] = {}
    for r in records:
        if "question" in r:
            by_type.setdefault(r["id"].rsplit("-", 1)[1], []).append(r["answer"])
    out = []
    for r in records:
        if "question" in r:
            kind = r["id"].rsplit("-", 1)[1]
            pool = by_type[kind]
            at = pool.index(r["answer"])
            wrong = [a for a in pool[at + 1:] + pool[:at] if a != r["answer"]][:N_PERTURBED]
            r = {**r, "paraphrased_answer": FORMS[kind].format(r["answer"]),
                 "perturbed_answers": [FORMS[kind].format(a) for a in wrong]}
        out.append(json.dumps(r, ensure_ascii=False))
    return out


def main() -> None:
    TARGET.mkdir(exist_ok=True)
    for split in ("forget", "retain", "holdout"):
        lines = (SOURCE / f"{split}.jsonl").read_text(encoding="utf-8").split("\n")
        (TARGET / f"{split}.jsonl").write_text("\n".join(tofu_records(lines)) + "\n", encoding="utf-8")
    shutil.copy(SOURCE / "calibration.txt", TARGET / "calibration.txt")
    toml = (SOURCE / "suite.toml").read_text(encoding="utf-8")
    toml = toml.replace('name = "demo"', 'name = "demo-tofu"').replace(
        'description = "', 'description = "The demo suite with TOFU paraphrased / perturbed answers '
        '(examples/tofu/make_demo_tofu.py). ', 1)
    (TARGET / "suite.toml").write_text(toml, encoding="utf-8")


if __name__ == "__main__":
    main()
