"""The result cache: JSON entries keyed on what was measured; a warm run re-measures nothing and
reaches the same verdicts; a new unlearned model re-uses the base model's rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

from auditq.audit.pipeline import run_audit
from auditq.audit.request import AuditRequest, audit_request
from auditq.cache.store import ResultCache, cache_root, output_from_json, output_to_json
from auditq.probes.base import ProbeOutput, Sample
from auditq.verdict.config import AuditConfig

FORMATS = ("fp", "rtn8")


def _request(pair, cache, unlearned=None, **kwargs) -> AuditRequest:
    return audit_request(base=pair["base"], unlearned=unlearned or pair["unlearned"], suite=pair["suite"],
                         formats=FORMATS, config=AuditConfig(min_n=1, bootstrap_resamples=200), cache=cache, **kwargs)


def _verdicts(report):
    return [(c.format, c.check, c.verdict, c.value, c.ci_low, c.ci_high) for c in report.all_checks()]


def _strip_created(report) -> str:
    """report.json without `created` and without what says where rows came from (measured vs cached).

    The cold run measures BASE and serves the byte-identical UNLEARNED from BASE's fresh entries; the warm run
    serves both. The evidence note names the cached roles, so it differs truthfully between the two runs."""
    from auditq.report.json_writer import JsonWriter

    data = json.loads(JsonWriter().render(report))
    data.pop("created")
    data.pop("cache", None)
    for fmt in data["formats"]:
        for role in fmt["roles"].values():
            role.pop("provenance", None)
        evidence = fmt.get("weight_evidence") or {}
        if set(evidence) == {"note"} and "result cache" in evidence["note"]:
            fmt.pop("weight_evidence")  # names which roles came from the cache: provenance, like the above
    return json.dumps(data, sort_keys=True)


def test_warm_run_measures_nothing_and_gives_identical_verdicts(memorised, tmp_path):
    cache = ResultCache(tmp_path / "results")
    cold = run_audit(_request(memorised, cache, unlearned=memorised["byte_copy"]), created="t")
    n_probes = 4 * len(FORMATS)
    # base and unlearned are byte-identical copies: the unlearned rows already hit the base rows' entries
    assert cache.misses == n_probes and cache.hits == n_probes
    entries = cache.entries()
    assert len(entries) == n_probes + len(FORMATS)  # one per probe output, one details entry per format
    for path in entries:  # plain JSON, never a pickle
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["cache_format"] == 2 and len(data["hmac"]) == 64 and data["material"]["checkpoint"]["model.safetensors"]

    warm_cache = ResultCache(tmp_path / "results")
    warm = run_audit(_request(memorised, warm_cache, unlearned=memorised["byte_copy"]), created="t")
    assert warm_cache.misses == 0 and warm_cache.hits == 2 * n_probes
    assert not [k for k in warm.timings if k.startswith(("probe:", "quantize:"))]  # nothing re-measured
    assert _verdicts(warm.report) == _verdicts(cold.report)
    assert [f.details for f in warm.report.formats] == [f.details for f in cold.report.formats]
    assert _strip_created(warm.report) == _strip_created(cold.report)
    assert warm.report.exit_code == cold.report.exit_code == 1


def test_new_unlearned_model_reuses_the_base_rows(random_pair, tmp_path):
    cache = ResultCache(tmp_path / "results")
    probes = ("verbmem", "mia")
    run_audit(_request(random_pair, cache, probes=probes), created="t")
    assert cache.hits == 0 and cache.misses == 2 * len(FORMATS) * len(probes)
    again = ResultCache(tmp_path / "results")
    run_audit(_request(random_pair, again, unlearned=random_pair["other"], probes=probes), created="t")
    # base at every format comes from the cache; only the new unlearned model is measured
    assert again.hits == len(FORMATS) * len(probes) and again.misses == len(FORMATS) * len(probes)


def test_evidence_missing_for_cached_base_rows_says_why(random_pair, tmp_path):
    """BASE's rtn8 rows come from the cache when a new UNLEARNED is audited: no BASE codes were read, and the
    report says exactly that (not "before weight-space evidence existed")."""
    run_audit(_request(random_pair, ResultCache(tmp_path / "results"), probes=("mia",)), created="t")
    report = run_audit(_request(random_pair, ResultCache(tmp_path / "results"), unlearned=random_pair["other"],
                                probes=("mia",)), created="t").report
    note = next(f for f in report.formats if f.format == "rtn8").weight_evidence["note"]
    assert "BASE in this format came from the result cache" in note and "--no-cache" in note


def test_key_changes_with_settings_suite_and_weights(random_pair, tmp_path):
    cache = ResultCache(tmp_path / "results")
    run_audit(_request(random_pair, cache, probes=("mia",)), created="t")
    changed = ResultCache(tmp_path / "results")
    run_audit(_request(random_pair, changed, probes=("mia",), mink_k=0.2), created="t")
    assert changed.hits == 0  # probe settings are part of the key
    other_seed = ResultCache(tmp_path / "results")
    run_audit(_request(random_pair, other_seed, probes=("mia",), seed=1), created="t")
    assert other_seed.hits == 0


def test_changed_measuring_code_is_a_miss(random_pair, tmp_path, monkeypatch):
    import auditq.cache.store

    cache = ResultCache(tmp_path / "results")
    run_audit(_request(random_pair, cache, probes=("mia",)), created="t")
    monkeypatch.setattr(auditq.cache.store, "_code_digest", "a-different-probe-implementation")
    edited = ResultCache(tmp_path / "results")
    run_audit(_request(random_pair, edited, probes=("mia",)), created="t")
    assert edited.hits == 0 and edited.misses == 2 * len(FORMATS)


def test_every_module_an_audit_runs_is_in_the_code_digest(random_pair, tmp_path):
    """The key's code digest covers every auditq module an audit imports (a module outside it -- the bf16
    upcast once was -- would let the cache serve numbers measured by older code)."""
    import sys

    from auditq.cache.store import measuring_files

    run_audit(_request(random_pair, ResultCache(tmp_path / "results")), created="t")
    covered = {path.resolve() for path in measuring_files()}
    used = {Path(module.__file__).resolve() for name, module in list(sys.modules.items())
            if name.split(".")[0] == "auditq" and getattr(module, "__file__", None)}
    assert len(used) > 30 and used <= covered, sorted(str(p) for p in used - covered)


def test_damaged_entry_is_a_miss_and_is_rewritten(random_pair, tmp_path):
    cache = ResultCache(tmp_path / "results")
    first = run_audit(_request(random_pair, cache, probes=("mia",)), created="t")
    victim = next(p for p in cache.entries() if json.loads(p.read_text())["material"]["entry"] == "probe:mia")
    victim.write_text("{not json", encoding="utf-8")
    again = ResultCache(tmp_path / "results")
    second = run_audit(_request(random_pair, again, probes=("mia",)), created="t")
    assert again.misses >= 1
    assert _verdicts(second.report) == _verdicts(first.report)
    assert all(json.loads(p.read_text()) for p in again.entries())


def test_output_json_round_trip_is_exact():
    output = ProbeOutput("mia", (
        Sample("forget", "a", {"loss": 1 / 3, "mink": -math.inf, "zlib": 1e-300, "n_tokens": 7}),
        Sample("holdout", "b", {"loss": math.inf, "mink": 0.1 + 0.2, "zlib": -0.0, "n_tokens": 3},
               prompt="p", generation="g é", reference="r"),
    ), {"mink_k": 0.4, "note": "x"})
    back = output_from_json(json.loads(json.dumps(output_to_json(output))))
    assert back == output
    assert back.values("forget", "loss")[0] == 1 / 3


def test_cli_cache_flags_and_clear(random_pair, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("AUDITQ_CACHE_DIR", str(tmp_path / "root"))
    assert cache_root() == tmp_path / "root"
    args = [random_pair["base"], random_pair["unlearned"], "--suite", random_pair["suite"], "-f", "fp",
            "--probes", "mia", "--threads", "1", "-q"]
    cli("check", *args, "--no-cache")
    assert not (tmp_path / "root" / "results").exists()
    cli("check", *args)
    assert len(ResultCache().entries()) == 4  # mia and details, for base and for unlearned
    code, out, _ = cli("cache", "info")
    assert code == 0 and "4 cached result(s)" in " ".join(out.split())
    (tmp_path / "root" / "demo").mkdir()  # cached demo models live beside results/ and must survive
    code, out, _ = cli("cache", "clear")
    assert code == 0 and "removed 4 cached result(s)" in " ".join(out.split())
    assert not ResultCache().entries() and (tmp_path / "root" / "demo").is_dir()

