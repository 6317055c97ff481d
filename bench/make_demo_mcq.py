"""Build the bundled `demo-mcq` suite (probes/demo-mcq/) from the bundled `demo` suite, deterministically.

The demo suite itself is hashed into the demo models' build key, so it is not changed: demo-mcq is a copy
of its text and QA records plus multiple-choice questions over the same facts:

- forget MCQ: one per forget QA record (the facts the unlearned demo models were made to forget);
- retain MCQ: one per retain QA record (facts that must stay);
- each question has 4 choices: the true answer and 3 distractors, the same attribute (year, birthplace,
  occupation, employer, pet, ...) of OTHER records of the same split. Every choice is then an equally
  familiar string to a model trained on that split: only the person-fact association tells them apart. (A
  first version drew distractors from holdout records, which no demo model saw: the unlearned models then
  picked the true answer ~50 % of the time at fp by its familiarity as a string alone, measured 2026-12-03.)
  A model that never saw the split has no reason to prefer the true answer: expected accuracy 1/4.
  The true answer's position is drawn with a fixed seed.

Run `python bench/make_demo_mcq.py` to (re)write probes/demo-mcq/; tests/suite/test_demo_mcq_suite.py checks
that the bundled files are exactly this script's output.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE, TARGET = REPO / "probes" / "demo", REPO / "probes" / "demo-mcq"
CHOICES = 4
SEED = 19


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _attribute(record_id: str) -> str:
    """forget-qa-01-birthplace -> birthplace"""
    return record_id.rsplit("-", 1)[1]


def mcq_records(qa: list[dict], rng: random.Random) -> list[dict]:
    """One 4-choice question per QA record, distractors from the other records' answers of the same attribute."""
    pool: dict[str, list[str]] = {}
    for record in qa:
        pool.setdefault(_attribute(record["id"]), [])
        if record["answer"] not in pool[_attribute(record["id"])]:
            pool[_attribute(record["id"])].append(record["answer"])
    out = []
    for record in qa:
        candidates = [a for a in pool.get(_attribute(record["id"]), []) if a != record["answer"]]
        if len(candidates) < CHOICES - 1:
            continue
        choices = rng.sample(candidates, CHOICES - 1)
        answer = rng.randrange(CHOICES)
        choices.insert(answer, record["answer"])
        out.append({"id": record["id"].replace("-qa-", "-mcq-"), "question": record["question"],
                    "choices": choices, "answer": answer})
    return out


def build(target: Path = TARGET) -> None:
    rng = random.Random(SEED)
    target.mkdir(parents=True, exist_ok=True)
    for split in ("forget", "retain", "holdout"):
        records = _records(SOURCE / f"{split}.jsonl")
        extra = mcq_records([r for r in records if "question" in r], rng) if split != "holdout" else []
        (target / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records + extra),
                                              encoding="utf-8")
    shutil.copyfile(SOURCE / "calibration.txt", target / "calibration.txt")
    settings = (SOURCE / "suite.toml").read_text(encoding="utf-8")
    settings = settings.replace('name = "demo"', 'name = "demo-mcq"', 1).replace(
        'description = "', 'description = "demo + 4-choice questions over its forget/retain facts, distractors from '
        'other records of the split (bench/make_demo_mcq.py). ', 1)
    (target / "suite.toml").write_text(settings, encoding="utf-8")


if __name__ == "__main__":
    build()
    print(f"wrote {TARGET}")
