"""The bundled demo suite: deterministic, up to date, big enough, and free of accidental overlaps."""

from __future__ import annotations

import json

from auditq.demo import data
from auditq.suite.records import bundled_suite_dir, load_suite


def test_generator_is_deterministic():
    assert data.render() == data.render()
    assert data.render(seed=1) != data.render()


def test_bundled_suite_is_up_to_date():
    directory = bundled_suite_dir("demo")
    for name, content in data.render().items():
        assert (directory / name).read_bytes() == content, f"{name} is stale: run python -m auditq.demo.data"
    assert data.main(["--check", "--out", str(directory)]) == 0


def test_write_and_check_roundtrip(tmp_path):
    data.write_suite(tmp_path)
    assert data.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "forget.jsonl").write_text("{}\n")
    assert data.main(["--check", "--out", str(tmp_path)]) == 1


def test_every_probed_set_has_enough_samples():
    suite = load_suite(bundled_suite_dir("demo"))
    assert len(suite.forget.texts) >= 24 and len(suite.forget.qa) >= 50
    assert len(suite.retain.texts) >= 24 and len(suite.retain.qa) >= 50
    assert len(suite.holdout.texts) >= 24
    assert suite.settings.qa_template == "Question: {question}\nAnswer:"
    assert (suite.settings.prefix_tokens, suite.settings.max_new_tokens) == (16, 32)
    assert len(suite.calibration_texts()) >= 16


def test_splits_are_disjoint_and_answers_unique():
    generated = data.generate()
    people = [p for split in ("forget", "retain", "holdout") for p in generated.people[split]]
    assert len({p.name for p in people}) == len(people)
    assert len({p.first for p in people}) == len(people)  # later bio sentences use the first name
    for attribute in ("year", "birthplace", "occupation", "employer", "pet_name"):
        values = [getattr(p, attribute) for p in people]
        assert len(set(values)) == len(values), attribute
    # a wrong person's birthplace never shares its distinctive word with another's
    roots = [p.birthplace.split()[-1] for p in people]
    assert len(set(roots)) == len(roots)
    passages = [i for split in ("forget", "retain", "holdout") for i, _ in generated.passages[split]]
    assert len(set(passages)) == len(passages) == len(data.PASSAGES)


def test_answers_are_bare_values_in_the_bio():
    suite = load_suite(bundled_suite_dir("demo"))
    bios = {r.id.split("-bio-")[1]: r.text for r in suite.forget.texts if "-bio-" in r.id}
    for record in suite.forget.qa:
        assert "\n" not in record.answer and len(record.answer.split()) <= 3
        assert record.answer in bios[record.id.split("-qa-")[1][:2]]


def test_records_are_ascii_json_with_ids():
    directory = bundled_suite_dir("demo")
    ids = set()
    for split in ("forget", "retain", "holdout"):
        raw = (directory / f"{split}.jsonl").read_bytes()
        raw.decode("ascii")
        for line in raw.decode().splitlines():
            record = json.loads(line)
            assert record["id"].startswith(split + "-")
            ids.add(record["id"])
            assert set(record) in ({"id", "text"}, {"id", "question", "answer"})
    assert len(ids) == sum(1 for s in ("forget", "retain", "holdout")
                           for _ in (directory / f"{s}.jsonl").read_text().splitlines())


def test_calibration_is_not_forget_data():
    suite = load_suite(bundled_suite_dir("demo"))
    forget_text = " ".join(r.text for r in suite.forget.texts)
    names = {r.text.split(" was born")[0] for r in suite.forget.texts if "-bio-" in r.id}
    for line in suite.calibration_texts():
        assert line not in forget_text
        assert not any(name in line for name in names)


def test_tokenizer_is_deterministic_and_prepends_bos():
    from auditq.demo.tokenizer import VOCAB_SIZE, build_tokenizer

    suite = load_suite(bundled_suite_dir("demo"))
    first, second = build_tokenizer(suite), build_tokenizer(suite)
    assert first.get_vocab() == second.get_vocab()
    assert len(first) == VOCAB_SIZE
    text = "Question: Where was Maren born?\nAnswer: Port Elsby\n"
    ids = first(text).input_ids
    assert ids[0] == first.bos_token_id and ids == second(text).input_ids
    assert first.decode(ids, skip_special_tokens=True) == text
    assert first.convert_ids_to_tokens(first("Answer: x").input_ids)[1] == "Answer"  # no prefix space
    assert {first.bos_token, first.eos_token, first.pad_token} == {"<s>", "</s>", "<pad>"}


def test_build_pipeline_smoke(tmp_path):
    """The whole build path (train, fragile with projection, honest, manifest, cache) on a toy recipe."""
    import torch

    from auditq.demo import build
    from auditq.demo.train import ModelConfig, TrainConfig
    from auditq.unlearning.config import UnlearnConfig

    threads = torch.get_num_threads()
    settings = build.BuildSettings(
        model=ModelConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                          intermediate_size=32),
        train=TrainConfig(epochs=1, batch_size=64),
        fragile=UnlearnConfig(lr=1e-3, max_steps=2, batch_size=4, retain_batch_size=4, retain_weight=5.0),
        check_every=1,
        honest=UnlearnConfig(forget_loss="npo", lr=1e-3, max_steps=1, batch_size=4, retain_batch_size=4),
    )
    messages: list[str] = []
    models = build.build_demo(cache_dir=tmp_path, log=messages.append, settings=settings)
    assert torch.get_num_threads() == threads
    assert models.root.parent == tmp_path and models.root.name.startswith("demo-")
    for path in (models.base, models.fragile, models.honest, models.retrain):
        assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    assert load_suite(models.suite).content_hash == load_suite(bundled_suite_dir("demo")).content_hash
    manifest = models.manifest()
    assert len(manifest["unlearning_steps"]["fragile"]) == 2 and set(manifest["seconds"]) >= {"base", "retrain", "fragile", "honest"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    messages.clear()
    assert build.build_demo(cache_dir=tmp_path, log=messages.append, settings=settings) == models
    assert messages == []  # cached: nothing rebuilt
    other = build.BuildSettings(**{**settings.__dict__, "seed": 1})
    assert build.cache_key(bundled_suite_dir("demo"), other) != build.cache_key(bundled_suite_dir("demo"), settings)


def test_cache_root_precedence(tmp_path, monkeypatch):
    from auditq.demo.build import cache_root

    monkeypatch.setenv("AUDITQ_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("AUDITQ_CACHE_DIR")
    assert "auditq" in str(cache_root())
