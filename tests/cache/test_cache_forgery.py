"""Issue 11 finding 6: a forged or edited cache entry is never trusted silently.

- an edited entry (no key) fails its sha256/HMAC check: it is dropped and re-measured, the verdicts equal a
  fresh run's, and the report and stderr say so;
- every row says whether it was measured or served from the cache (with the entry's sha256) in
  report.json, report.md, SARIF and the terminal;
- an entry re-signed by someone holding the key is caught by --verify-cache N (exit 3, no --out).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from auditq.cache.key import seal, signing_key
from auditq.cache.store import _plain


def _args(memorised, out):
    return ["check", memorised["base"], memorised["byte_copy"], "--suite", memorised["suite"], "--config",
            memorised["config"], "-f", "fp,rtn8", "--probes", "verbmem,knowmem", "-q", "--threads", "1",
            "--format", "sarif", "--out", out]


def _entries(kind: str):
    root = Path(os.environ["AUDITQ_CACHE_DIR"]) / "results"
    for path in sorted(root.glob("*/*.json")):
        data = json.loads(path.read_text())
        if data["material"]["entry"] == f"probe:{kind}":
            yield path, data


def _zero_scores(data):
    for sample in data["output"]["samples"]:
        sample["scores"] = {k: 0.0 for k in sample["scores"]}
        if "generation" in sample:
            sample["generation"] = "forged"


def test_edited_entry_is_detected_and_remeasured(memorised, cli, tmp_path):
    code, _, _ = cli(*_args(memorised, tmp_path / "cold"))
    cold = json.loads((tmp_path / "cold" / "report.json").read_text())
    # base is measured; unlearned is a byte-identical copy, so its rows are served from the entries just stored
    assert code == 1 and all(v == "measured" for f in cold["formats"] for v in f["roles"]["base"]["provenance"].values())
    assert all(v.startswith("cached:") for f in cold["formats"] for v in f["roles"]["unlearned"]["provenance"].values())
    edited = 0
    for path, data in _entries("verbmem"):
        _zero_scores(data)  # the attacker cannot re-sign: sha256/hmac left as they were
        path.write_text(json.dumps(data))
        edited += 1
    assert edited
    code, out, err = cli(*_args(memorised, tmp_path / "warm"))
    warm = json.loads((tmp_path / "warm" / "report.json").read_text())
    assert code == 1 and "failed their sha256/HMAC check" in err
    assert len(warm["cache"]["tampered"]) == edited
    verdicts = lambda r: [(c["format"], c["check"], c["verdict"], c["value"]) for c in r["formats"]for c in c["checks"]]  # noqa: E731
    assert verdicts(warm) == verdicts(cold)
    for warm_fmt, cold_fmt in zip(warm["formats"], cold["formats"]):
        base = warm_fmt["roles"]["base"]["provenance"]
        assert base["verbmem"] == "measured" and base["knowmem"].startswith("cached:")  # re-measured, not forged
        # the unlearned copy re-uses the re-measured entry: the honest content, hence the cold run's hash
        assert warm_fmt["roles"]["unlearned"]["provenance"] == cold_fmt["roles"]["unlearned"]["provenance"]
    md = (tmp_path / "warm" / "report.md").read_text()
    assert "mixed: cached (knowmem " in md and "measured (verbmem)" in md
    sarif = json.loads((tmp_path / "warm" / "report.sarif").read_text())
    results = sarif["runs"][0]["results"]
    assert results and all("provenance" in r["properties"] and "source:" in r["message"]["text"] for r in results)
    assert "cached (" in out or "mixed: cached" in out  # the terminal's metrics table has a source column


def test_resigned_forgery_is_caught_by_verify_cache(memorised, cli, tmp_path):
    code, _, _ = cli(*_args(memorised, tmp_path / "cold"))
    assert code == 1
    key = signing_key(Path(os.environ["AUDITQ_CACHE_DIR"]) / "results")
    for path, data in _entries("verbmem"):
        if "rtn8" not in data["material"]["format"]:
            continue
        _zero_scores(data)
        body = {k: v for k, v in data.items() if k not in ("sha256", "hmac")}
        data["sha256"], data["hmac"] = seal(body, key, _plain)  # someone with the key re-signs the forgery
        path.write_text(json.dumps(data))
    code, out, _ = cli(*_args(memorised, tmp_path / "trusted"))
    trusted = json.loads((tmp_path / "trusted" / "report.json").read_text())
    rtn8 = next(f for f in trusted["formats"] if f["format"] == "rtn8")
    assert all(r["provenance"]["verbmem"].startswith("cached:") for r in rtn8["roles"].values())  # visible as cached
    code, out, err = cli(*_args(memorised, tmp_path / "verified"), "--verify-cache", "100")
    assert code == 3, err
    assert "--verify-cache" in err and "rtn8" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "verified").exists()


def test_verify_cache_passes_on_honest_entries(memorised, cli, tmp_path):
    cli(*_args(memorised, tmp_path / "cold"))
    code, _, err = cli(*_args(memorised, tmp_path / "warm"), "--verify-cache", "3")
    report = json.loads((tmp_path / "warm" / "report.json").read_text())
    assert code == 1 and len(report["cache"]["verified"]) == 3, err
