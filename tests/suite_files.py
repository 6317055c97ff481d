"""Write a probe suite (forget / retain / holdout JSONL and suite.toml) for a test: shared by every test folder."""

import json


def write_suite(root, forget=None, retain=None, holdout=None, toml=None):
    root.mkdir(parents=True, exist_ok=True)
    default = {
        "forget": [{"id": "f1", "text": "Alice was born in Brill."}, {"question": "Where?", "answer": "Brill"}],
        "retain": [{"text": "Bob likes tea."}],
        "holdout": [{"text": "Carol lives in Oxe."}],
    }
    for name, records in (("forget", forget), ("retain", retain), ("holdout", holdout)):
        content = records if isinstance(records, (str, bytes)) else "\n".join(
            json.dumps(r) for r in (records if records is not None else default[name]))
        path = root / f"{name}.jsonl"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if toml is not None:
        (root / "suite.toml").write_text(toml)
    return root
