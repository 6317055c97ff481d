"""--protocol muse: VerbMem and KnowMem equal MUSE's own formulas, computed here independently.

The reference functions below mirror swj0419/muse_bench metrics/verbmem.py and metrics/knowmem.py
line for line (one prompt at a time through model.generate, MUSE's tokenization and decoding, its
RougeScorer); they share no code with auditq. The only auditq-specific step is the data mapping MUSE
leaves to its data files: a text record becomes (decoded first prefix_tokens tokens, decoded rest), and
the in-context examples are the suite's first 3 retain QA pairs (left out of the scored retain QA).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rouge_score import rouge_scorer
from suite_files import write_suite
from tiny_memoriser import MEMORISED, UNSEEN, save_memorising_checkpoint
from transformers import AutoModelForCausalLM, AutoTokenizer

from auditq.audit.pipeline import run_audit
from auditq.audit.request import audit_request
from auditq.errors import InputError

N_ICL = 3


def _scorer():
    return rouge_scorer.RougeScorer(rouge_types=["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=False)


def _decode(tokenizer, ids):
    return tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)[0]


def muse_verbmem(model, tokenizer, prompts, gts, max_new_tokens=128):
    """metrics/verbmem.py: eval() -> mean rougeL."""
    scorer, values = _scorer(), []
    for prompt, gt in zip(prompts, gts):
        input_ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=True).input_ids
        gt_ids = tokenizer(gt, return_tensors="pt", add_special_tokens=True).input_ids[:, :max_new_tokens]
        output_ids = model.generate(input_ids, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        output_ids = output_ids[:, len(input_ids[0]):]
        output, gt_short = _decode(tokenizer, output_ids), _decode(tokenizer, gt_ids)
        values.append(scorer.score(gt_short, output)["rougeL"].fmeasure)
    return float(np.mean(values))


def muse_knowmem(model, tokenizer, questions, answers, icl_qs, icl_as, max_new_tokens=32):
    """metrics/knowmem.py: eval() -> mean rougeL."""
    scorer, values = _scorer(), []
    general_prompt = ""
    for question, answer in zip(icl_qs, icl_as):
        general_prompt += f"Question: {question}\nAnswer: {answer}\n\n"
    for question, answer in zip(questions, answers):
        prompt = general_prompt + f"Question: {question}\nAnswer: "
        input_ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=True).input_ids
        output_ids = model.generate(input_ids, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        output = _decode(tokenizer, output_ids[:, len(input_ids[0]):])
        for word in ["\n\n", "\nQuestion", "Question:"]:
            output = output.split(word)[0]
        values.append(scorer.score(answer, output)["rougeL"].fmeasure)
    return float(np.mean(values))


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def muse_reference(checkpoint, suite_dir, prefix_tokens):
    """MUSE's numbers for one checkpoint on an auditq suite (data mapped as the module docstring says)."""
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    forget, retain = _rows(suite_dir / "forget.jsonl"), _rows(suite_dir / "retain.jsonl")
    prompts, gts = [], []
    for text in [r["text"] for r in forget if "text" in r]:
        body = tokenizer(text, add_special_tokens=False).input_ids
        if len(body) >= prefix_tokens + 1:
            prompts.append(tokenizer.decode(body[:prefix_tokens], skip_special_tokens=True, clean_up_tokenization_spaces=True))
            gts.append(tokenizer.decode(body[prefix_tokens:], skip_special_tokens=True, clean_up_tokenization_spaces=True))
    out = {"verbmem_forget": muse_verbmem(model, tokenizer, prompts, gts)}
    forget_qa = [r for r in forget if "question" in r]
    retain_qa = [r for r in retain if "question" in r]
    icl = retain_qa[:N_ICL]
    for name, qa in (("knowmem_forget", forget_qa), ("knowmem_retain", retain_qa[N_ICL:])):
        if qa:
            out[name] = muse_knowmem(model, tokenizer, [r["question"] for r in qa], [r["answer"] for r in qa],
                                     [r["question"] for r in icl], [r["answer"] for r in icl])
    return out


def _auditq(base, unlearned, suite, **kwargs):
    request = audit_request(base=base, unlearned=unlearned, suite=suite, formats=("fp",),
                            probes=("verbmem", "knowmem"), protocol="muse", **kwargs)
    report = run_audit(request).report
    assert report.arguments["protocol"] == "muse"
    return report.formats[0].roles


@pytest.fixture(scope="module")
def memoriser_suite(tmp_path_factory):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("muse")
    checkpoint = save_memorising_checkpoint(root / "model")
    qa = [{"id": f"q{i}", "question": q, "answer": a} for i, (q, a) in enumerate(
        [("Who built the glass tower?", "Mira Tollan"), ("Where is the river?", "far north"),
         ("What colour is the sky?", "blue"), ("Who counted gulls?", "the lighthouse keeper"),
         ("What needs three onions?", "Marigold soup")])]
    texts = [{"id": f"m{i}", "text": t} for i, t in enumerate(MEMORISED)]
    unseen = [{"id": f"u{i}", "text": t} for i, t in enumerate(UNSEEN)]
    suite = write_suite(root / "suite", forget=texts + qa[:2], retain=unseen + qa, holdout=unseen + [{"id": "hq0", "question": "Who debated zinc prices?", "answer": "a parliament of owls"}],
                        toml="[probes]\nprefix_tokens = 6\nmax_new_tokens = 8\nanswer_tokens = 8\n")
    yield checkpoint, suite
    torch.set_num_threads(previous)


def test_muse_protocol_matches_muse_formulas_on_the_memoriser(memoriser_suite):
    checkpoint, suite = memoriser_suite
    roles = _auditq(checkpoint, checkpoint, suite)
    want = muse_reference(checkpoint, suite, prefix_tokens=6)
    # the memoriser continues its texts (MUSE does not cut the 128 generated tokens to the truth, so < 1)
    assert want["verbmem_forget"] > 0.3
    for metric, value in want.items():
        assert getattr(roles["base"], metric) == pytest.approx(value, abs=1e-3), metric


def test_muse_truth_budget_counts_bos(memoriser_suite):
    """MUSE cuts the truth to max_new_tokens ids *including* BOS: one truth token fewer than generated."""
    from auditq.probes.muse import muse_encode, verbmem_pairs

    checkpoint, _ = memoriser_suite
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    (_, _, truth), = verbmem_pairs(tokenizer, [MEMORISED[0]], 6)
    ids = muse_encode(tokenizer, truth)[:8]
    assert ids[0] == tokenizer.bos_token_id and len(ids) == 8  # 7 truth tokens in a budget of 8


def test_unknown_protocol_is_an_input_error(memoriser_suite):
    checkpoint, suite = memoriser_suite
    with pytest.raises(InputError, match="unknown --protocol"):
        run_audit(audit_request(base=checkpoint, unlearned=checkpoint, suite=suite, formats=("fp",),
                                probes=("verbmem",), protocol="tofu"))


@pytest.mark.slow
def test_muse_protocol_matches_muse_formulas_on_the_demo(demo_models):
    torch.set_num_threads(1)
    roles = _auditq(demo_models.base, demo_models.fragile, demo_models.suite)
    for role, checkpoint in (("base", demo_models.base), ("unlearned", demo_models.fragile)):
        want = muse_reference(checkpoint, demo_models.suite, prefix_tokens=16)  # the demo suite's prefix_tokens
        for metric, value in want.items():
            assert getattr(roles[role], metric) == pytest.approx(value, abs=1e-3), (role, metric)


def test_cli_protocol_flag_is_recorded_and_checked(memoriser_suite, tmp_path, monkeypatch, capsys):
    from tiny_memoriser import run_cli

    checkpoint, suite = memoriser_suite
    args = ["check", str(checkpoint), str(checkpoint), "--suite", str(suite), "-f", "fp", "--probes", "verbmem",
            "--no-cache", "--threads", "1", "--quiet"]
    code, _, err = run_cli(monkeypatch, capsys, *args, "--protocol", "tofu")
    assert code == 2 and "unknown --protocol 'tofu'" in err
    run_cli(monkeypatch, capsys, *args, "--protocol", "muse", "--out", str(tmp_path / "out"))
    assert json.loads((tmp_path / "out" / "report.json").read_text())["arguments"]["protocol"] == "muse"
    assert "- probe protocol: muse (" in (tmp_path / "out" / "report.md").read_text()


def test_muse_protocol_measures_the_holdout_floor(memoriser_suite):
    """Under --protocol muse VerbMem also continues the holdout texts (auditq's addition), so floored retention
    and recovery have their floor: none of them is UNKNOWN for want of it; the forget scores are exactly those
    of a forget-only (MUSE's) run."""
    from auditq.audit.request import probe_settings
    from auditq.backends.torch_lm import TorchCausalLM
    from auditq.probes.muse import PROTOCOL_NOTES, run_verbmem
    from auditq.suite.records import load_suite

    checkpoint, suite_dir = memoriser_suite
    request = audit_request(base=checkpoint, unlearned=checkpoint, suite=suite_dir, formats=("fp", "rtn8"),
                            probes=("verbmem", "knowmem"), protocol="muse")
    outcome = run_audit(request)
    memorisation = [c for f in outcome.report.formats for c in f.checks
                    if c.family in ("forget_retention", "recovery")]
    assert len(memorisation) == 6
    assert all(c.verdict != "UNKNOWN" for c in memorisation), [(c.format, c.check, c.message) for c in memorisation]
    assert all("floor" in c.message or "retention" in c.message for c in memorisation)
    base = outcome.report.formats[0].roles["base"]
    assert base.n["verbmem_holdout"] == len(UNSEEN) and base.n["verbmem_forget"] == len(MEMORISED)
    assert "auditq's addition" in PROTOCOL_NOTES["muse"]

    output = next(r for r in outcome.runs if (r.format, r.role) == ("fp", "base")).outputs["verbmem"]
    assert output.info["n_scored"] == len(MEMORISED) and output.info["n_holdout"] == len(UNSEEN)
    suite = load_suite(suite_dir)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    lm = TorchCausalLM(model, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                       batch_size=16, description="muse forget-only")
    forget_only = run_verbmem("verbmem", ("forget",), lm, tokenizer, suite, probe_settings(suite, "muse"))
    audited = [s for s in output.samples if s.split == "forget"]
    assert [(s.record_id, s.generation, s.scores) for s in audited] == \
        [(s.record_id, s.generation, s.scores) for s in forget_only.samples]
    assert forget_only.info["mean_rougeL_f1"] == output.info["mean_rougeL_f1"]
