"""Multiple-choice records in a suite (the mcq probe), the bundled demo-mcq suite, and --suite by bundled name."""

import filecmp
import importlib.util
import json
from pathlib import Path

import pytest
from suite_files import write_suite

from auditq.errors import InputError
from auditq.suite.records import bundled_suite_dir, load_suite, resolve_suite

REPO = Path(__file__).resolve().parents[2]
GOOD = {"id": "m1", "question": "Where was Alice born?", "choices": ["Oxe", "Brill", "Tarn"], "answer": 1}


def _forget(record: dict) -> list[dict]:
    return [{"id": "f1", "text": "Alice was born in Brill."}, record]


def test_mcq_records_load_beside_texts_and_qa(tmp_path):
    suite = load_suite(write_suite(tmp_path / "s", forget=_forget(GOOD)))
    (mcq,) = suite.forget.mcq
    assert (mcq.id, mcq.choices, mcq.answer) == ("m1", ("Oxe", "Brill", "Tarn"), 1)
    assert suite.retain.mcq == () and suite.forget.qa == ()


@pytest.mark.parametrize("change, expected", [
    ({"answer": 3}, "'answer' = 3: expected the index of the correct choice, 0 to 2"),
    ({"answer": True}, "'answer' = True"),
    ({"answer": "Brill"}, "'answer' = 'Brill'"),
    ({"choices": ["only"]}, "'choices' must be a list of at least 2 non-empty strings"),
    ({"choices": "Oxe,Brill"}, "'choices' must be a list"),
    ({"choices": ["Oxe", " "]}, "'choices' must be a list"),
    ({"choices": ["Oxe", "Oxe"]}, "'choices' has a duplicate choice"),
    ({"question": ""}, "'question' must be a non-empty string"),
])
def test_bad_mcq_records_name_file_and_line(tmp_path, change, expected):
    with pytest.raises(InputError) as info:
        load_suite(write_suite(tmp_path / "s", forget=_forget({**GOOD, **change})))
    assert f"forget.jsonl:2: {expected}" in str(info.value) and "\n" not in str(info.value)


def test_bundled_demo_mcq_is_the_generator_output(tmp_path):
    """probes/demo-mcq is exactly what bench/make_demo_mcq.py writes (and the demo suite is untouched)."""
    spec = importlib.util.spec_from_file_location("make_demo_mcq", REPO / "bench" / "make_demo_mcq.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(tmp_path / "demo-mcq")
    bundled = bundled_suite_dir("demo-mcq")
    names = sorted(p.name for p in (tmp_path / "demo-mcq").iterdir())
    assert names == sorted(p.name for p in bundled.iterdir())
    assert all(filecmp.cmp(tmp_path / "demo-mcq" / n, bundled / n, shallow=False) for n in names)
    suite = load_suite(bundled)
    assert len(suite.forget.mcq) == len(suite.forget.qa) == 100 and len(suite.retain.mcq) == 100
    for split in (suite.forget, suite.retain):  # distractors: other records' answers of the same split
        answers = {r.id.replace("-qa-", "-mcq-"): r.answer for r in split.qa}
        for record in split.mcq:
            assert len(record.choices) == 4 and record.choices[record.answer] == answers[record.id]
            assert all(c in answers.values() for c in record.choices)
    positions = [r.answer for r in suite.forget.mcq]
    assert all(positions.count(i) >= 15 for i in range(4))  # the true answer is not always in one place
    demo = load_suite(bundled_suite_dir("demo"))
    assert demo.forget.mcq == () and demo.forget.texts == suite.forget.texts


def test_suite_option_takes_a_bundled_name_or_a_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_suite("demo-mcq") == bundled_suite_dir("demo-mcq")
    assert resolve_suite(None) == bundled_suite_dir("demo")
    (tmp_path / "demo-mcq").mkdir()  # a directory of that name wins over the bundled suite
    assert resolve_suite("demo-mcq") == Path("demo-mcq")
    assert resolve_suite("no-such-suite") == Path("no-such-suite")
    with pytest.raises(InputError, match="is not a directory"):
        load_suite(resolve_suite("no-such-suite"))
