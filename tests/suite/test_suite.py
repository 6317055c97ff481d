"""Suite parsing: good suites load, bad ones fail with one line naming the file and line."""

import json

import pytest
from suite_files import write_suite

from auditq.errors import InputError
from auditq.suite.records import bundled_suite_dir, load_suite


def test_loads_records_and_settings(tmp_path):
    suite = load_suite(write_suite(tmp_path / "s", toml='[suite]\nname = "x"\n[probes]\nprefix_tokens = 8\n'))
    assert suite.name == "x" and suite.settings.prefix_tokens == 8 and suite.settings.max_new_tokens == 64
    assert suite.forget.texts[0].id == "f1" and suite.forget.qa[0].answer == "Brill"
    assert suite.retain.texts[0].id == "retain-1"
    assert len(suite.content_hash) == 64


@pytest.mark.parametrize("kwargs, expected", [
    ({"forget": '{"text": "a"}\n{"text": "b"\n'}, "forget.jsonl:2: malformed JSON"),
    ({"retain": b'{"text": "caf\xe9"}'}, "retain.jsonl:1: not valid UTF-8"),
    ({"holdout": ""}, "holdout split is empty"),
    ({"forget": '{"title": "x"}'}, "forget.jsonl:1: a record needs 'text'"),
    ({"forget": '[1, 2]'}, "forget.jsonl:1: expected a JSON object"),
    ({"holdout": '{"question": "q", "answer": "a"}'}, "holdout split has no text records"),
    ({"toml": "[probes]\nprefix = 3\n"}, "unknown [probes] setting"),
    ({"toml": "[probes\n"}, "invalid TOML"),
])
def test_bad_suites_name_file_and_line(tmp_path, kwargs, expected):
    root = write_suite(tmp_path / "s", **kwargs)
    with pytest.raises(InputError, match=None) as info:
        load_suite(root)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_split(tmp_path):
    root = write_suite(tmp_path / "s")
    (root / "retain.jsonl").unlink()
    with pytest.raises(InputError, match="missing retain split"):
        load_suite(root)


def test_bundled_demo_suite_is_valid():
    suite = load_suite(bundled_suite_dir())
    assert len(suite.forget.texts) >= 20 and len(suite.forget.qa) >= 20
    assert len(suite.holdout.texts) >= 20 and len(suite.retain.qa) >= 20
    forget_texts = {r.text for r in suite.forget.texts}
    assert not forget_texts & {r.text for r in suite.holdout.texts}
    assert not forget_texts & {r.text for r in suite.retain.texts}
