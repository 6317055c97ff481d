"""auditq's VerbMem, KnowMem and MIA next to the tools a user would otherwise run, on one model and suite.

    python bench/bench_peers.py MODEL_DIR [--suite SUITE] [--limit N] [--threads T]

Three ways to measure the same records, each timed from loading the model to the last score:

1. auditq: the probes (auditq.probes.verbmem/knowmem/mia) on TorchCausalLM, batched greedy generation and
   batched scoring, the model loaded once.
2. MUSE-style, written after the paper's MUSE scripts (swj0419/muse_bench eval.py and metrics/*.py): the
   model is (re)loaded for the precision, then ONE `model.generate` call per sample (VerbMem: prefix ->
   continuation, KnowMem: question prompt -> answer, greedy) and ONE forward per text for Min-K% (MIA).
   This is a faithful re-write of that loop structure, not MUSE's files (they need its data layout), and it
   computes the same quantities auditq does (ROUGE-L F1, Min-40%).
3. lm-eval 0.4.13: HFLM.loglikelihood_rolling over the same texts (forget + holdout texts, the MIA texts). It
   has no VerbMem/KnowMem (generation + ROUGE) equivalent; its row is log-likelihood scoring only, the work
   MIA needs. Skipped when lm-eval is not installed (the auditq[peers] extra).

Before any clock starts the model is loaded once and dropped, so first-import costs land on no tool.
Only full precision is timed (one precision = one load for the MUSE-style loop; at P precisions it reloads P
times while auditq restores weights in place). Prints each tool's time per metric and as a ratio to auditq's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """Wall and process CPU seconds since the last lap (on a loaded shared machine wall time includes waiting for
    a core; CPU time is the work done)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def _suite(path: str | None, limit: int):
    from dataclasses import replace

    from auditq.suite.records import load_suite, resolve_suite

    suite = load_suite(resolve_suite(path))
    cut = lambda split: replace(split, texts=split.texts[:limit], qa=split.qa[:limit], mcq=split.mcq[:limit])  # noqa: E731
    return replace(suite, forget=cut(suite.forget), retain=cut(suite.retain), holdout=cut(suite.holdout))


def _settings(suite):
    from auditq.probes.base import ProbeSettings

    s = suite.settings
    return ProbeSettings(prefix_tokens=s.prefix_tokens, max_new_tokens=s.max_new_tokens, answer_tokens=s.answer_tokens,
                         qa_template=s.qa_template, mink_k=s.mink_k)


def _load(model_dir: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, tokenizer


def time_auditq(model_dir: str, suite) -> dict[str, float]:
    """Seconds per probe; the load counts towards the first."""
    from auditq.backends.torch_lm import TorchCausalLM
    from auditq.probes import PROBES

    settings, times, clock = _settings(suite), {}, Clock()
    model, tokenizer = _load(model_dir)
    lm = TorchCausalLM(model, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    for name in ("verbmem", "knowmem", "mia"):
        PROBES.load(name)().run(lm, tokenizer, suite, settings)
        times[name] = clock.lap()
    return times


def time_muse_style(model_dir: str, suite) -> dict[str, float]:
    """The paper's MUSE loop: reload, then one generate / forward per sample (see the module docstring)."""
    import torch

    from auditq.probes.mia import member_records
    from auditq.probes.text import rouge_l_f1
    from auditq.probes.verbmem import VerbMem

    settings, times, clock = _settings(suite), {}, Clock()
    model, tokenizer = _load(model_dir)
    with torch.no_grad():
        # the same records auditq's probes read: VerbMem on its splits (forget, and holdout for the floor)
        for record in [r for split in VerbMem.splits for r in suite.split(split).texts]:
            ids = tokenizer(record.text, return_tensors="pt").input_ids
            prompt, truth = ids[:, :settings.prefix_tokens], ids[0, settings.prefix_tokens:]
            out = model.generate(prompt, max_new_tokens=settings.max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            rouge_l_f1(tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True),
                       tokenizer.decode(truth, skip_special_tokens=True))
        times["verbmem"] = clock.lap()
        for split in ("forget", "retain", "holdout"):  # KnowMem: one generate per question
            for record in suite.split(split).qa:
                prompt = tokenizer(settings.qa_template.format(question=record.question), return_tensors="pt").input_ids
                out = model.generate(prompt, max_new_tokens=settings.answer_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
                rouge_l_f1(tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True), record.answer)
        times["knowmem"] = clock.lap()
        for split in ("forget", "holdout"):  # MIA: one forward per text (QA pairs too with mia_qa), Min-K%
            for _, text in member_records(suite, split, settings.qa_template):
                ids = tokenizer(text, return_tensors="pt").input_ids
                logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
                token_logp = logp.gather(-1, ids[0, 1:, None])[:, 0].numpy()
                k = max(1, int(len(token_logp) * settings.mink_k))
                float(-np.sort(token_logp)[:k].mean())
        times["mia"] = clock.lap()
    return times


def time_lm_eval(model_dir: str, suite) -> dict[str, float] | None:
    """lm-eval's HFLM.loglikelihood_rolling over the MIA texts (the load included); None without lm-eval."""
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        return None
    clock = Clock()
    lm = HFLM(pretrained=model_dir, device="cpu", dtype="float32", batch_size=16)
    from auditq.probes.mia import member_records

    texts = [t for split in ("forget", "holdout") for _, t in member_records(suite, split, suite.settings.qa_template)]
    requests = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i)
                for i, t in enumerate(texts)]
    lm.loglikelihood_rolling(requests, disable_tqdm=True)
    return {"mia": clock.lap()}


Times = dict[str, tuple[float, float]]


def report(times: dict[str, Times | None]) -> str:
    """The table: wall and CPU seconds per metric and tool, and each as a ratio to auditq's."""
    ours = times["auditq"]
    lines = [f"{'tool':<12}{'metric':<10}{'wall s':>9}{'x auditq':>10}{'cpu s':>9}{'x auditq':>10}"]
    for tool, per in times.items():
        if per is None:
            lines.append(f"{tool:<12}skipped (not installed: pip install auditq[peers])")
            continue
        for metric, (wall, cpu) in per.items():
            lines.append(f"{tool:<12}{metric:<10}{wall:>9.2f}{wall / ours[metric][0]:>10.2f}"
                         f"{cpu:>9.2f}{cpu / ours[metric][1]:>10.2f}")
    for metric in ours:
        ranked = sorted((per[metric][1], tool) for tool, per in times.items() if per and metric in per)
        lines.append(f"fastest at {metric} (CPU time): {ranked[0][1]} ({ranked[0][0]:.2f} s)")
    lines.append("why: auditq batches every sample of a probe into a few generate/score passes with one load; the "
                 "MUSE-style loop pays one generate (a full decode loop) or forward per sample, and a reload per "
                 "precision; lm-eval scores log-likelihood only (no generation), batched, after its own load.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a Hugging Face checkpoint directory")
    parser.add_argument("--suite", default=None, help="suite dir or bundled name (default: demo)")
    parser.add_argument("--limit", type=int, default=1000, help="records per split and kind")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    suite = _suite(args.suite, args.limit)
    _load(args.model)  # warm-up: first imports and file cache are paid before any tool's clock starts
    times = {"auditq": time_auditq(args.model, suite), "muse-style": time_muse_style(args.model, suite),
             "lm-eval": time_lm_eval(args.model, suite)}
    print(report(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
