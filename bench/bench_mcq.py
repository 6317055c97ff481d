"""Wall time of multiple-choice scoring: lm-eval 0.4.13 and auditq's mcq probe on the same questions.

    python bench/bench_mcq.py MODEL_DIR [--suite demo-mcq] [--limit N] [--threads T] [--formats fp,rtn8,rtn4]

Prints lm-eval's time (HFLM on the model directory, a task file written for the suite's forget + retain MCQ,
`simple_evaluate`, model load included) and auditq's (checkpoint load, then the mcq probe in each format
through auditq's own format code: rtn rows quantize in place and restore from the files), and both tools'
accuracy, which must agree at fp. Wall and process CPU seconds: on a loaded shared machine wall time includes
waiting for a core (tests/probes/test_probe_mcq.py holds them to the same choice per question).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def _suite(name: str, limit: int):
    from auditq.suite.records import load_suite, resolve_suite

    suite = load_suite(resolve_suite(name))
    return replace(suite, forget=replace(suite.forget, mcq=suite.forget.mcq[:limit]),
                   retain=replace(suite.retain, mcq=suite.retain.mcq[:limit]))


def _task_dir(suite, root: Path) -> Path:
    """A local lm-eval task over the suite's MCQ (prompt = the suite's qa_template), its data as JSON lines."""
    data = root / "mcq.jsonl"
    records = [*suite.forget.mcq, *suite.retain.mcq]
    data.write_text("".join(json.dumps({"question": r.question, "choices": list(r.choices), "answer": r.answer}) + "\n"
                            for r in records), encoding="utf-8")
    template = json.dumps(suite.settings.qa_template.replace("{question}", "{{question}}"))
    (root / "auditq_mcq.yaml").write_text(
        f"task: auditq_mcq\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        f"output_type: multiple_choice\ndoc_to_text: {template}\ndoc_to_choice: \"{{{{choices}}}}\"\n"
        "doc_to_target: answer\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n", encoding="utf-8")
    return root


def time_lm_eval(model_dir: str, suite) -> tuple[float, float, float] | None:
    """(wall seconds, CPU seconds, acc over forget + retain MCQ); None when lm-eval is not installed (the auditq[peers] extra)."""
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        return None
    with tempfile.TemporaryDirectory(prefix="auditq-bench-mcq-") as tmp:
        os.environ.setdefault("HF_DATASETS_CACHE", str(Path(tmp) / "datasets"))
        tasks = _task_dir(suite, Path(tmp))
        start, cpu = time.perf_counter(), time.process_time()
        lm = HFLM(pretrained=model_dir, device="cpu", dtype="float32", batch_size=16)
        results = lm_eval.simple_evaluate(model=lm, tasks=["auditq_mcq"], num_fewshot=0,
                                          task_manager=TaskManager(include_path=str(tasks)))
        return (time.perf_counter() - start, time.process_time() - cpu,
                float(results["results"]["auditq_mcq"]["acc,none"]))


def time_auditq(model_dir: str, suite, formats: list[str]) -> list[tuple[str, float, float, float]]:
    """(format, wall seconds, CPU seconds, acc over forget + retain MCQ) per format; the checkpoint load counts towards the first."""
    from auditq.checkpoint.load import load_checkpoint
    from auditq.formats import make_formats
    from auditq.formats.base import FormatContext
    from auditq.probes.base import ProbeSettings
    from auditq.probes.mcq import MultipleChoice

    settings = ProbeSettings(qa_template=suite.settings.qa_template)
    rows = []
    start, cpu = time.perf_counter(), time.process_time()
    checkpoint = load_checkpoint(model_dir, "base")
    with tempfile.TemporaryDirectory(prefix="auditq-bench-mcq-") as tmp:
        for fmt in make_formats(formats):
            ctx = FormatContext(workdir=Path(tmp), role="base", weight_evidence=False, suite=suite)
            with fmt.apply(checkpoint, ctx) as lm:
                out = MultipleChoice().run(lm, checkpoint.tokenizer, suite, settings)
            accs = [s.scores["acc"] for s in out.samples]
            rows.append((fmt.name, time.perf_counter() - start, time.process_time() - cpu, sum(accs) / len(accs)))
            start, cpu = time.perf_counter(), time.process_time()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a Hugging Face checkpoint directory")
    parser.add_argument("--suite", default="demo-mcq", help="suite dir or bundled name with MCQ records")
    parser.add_argument("--limit", type=int, default=1000, help="MCQ records per split")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--formats", default="fp,rtn8,rtn4")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    suite = _suite(args.suite, args.limit)
    n = len(suite.forget.mcq) + len(suite.retain.mcq)
    choices = sum(len(r.choices) for r in (*suite.forget.mcq, *suite.retain.mcq))
    print(f"{n} questions, {choices} choices, {args.threads} torch thread(s)")
    ours = time_auditq(args.model, suite, args.formats.split(","))
    peer = time_lm_eval(args.model, suite)
    print(f"{'tool':<10}{'format':<8}{'wall s':>9}{'cpu s':>9}{'acc':>7}")
    if peer is None:
        print(f"{'lm-eval':<10}{'fp':<8}  skipped (lm-eval not installed: pip install auditq[peers])")
    else:
        print(f"{'lm-eval':<10}{'fp':<8}{peer[0]:>9.2f}{peer[1]:>9.2f}{peer[2]:>7.3f}")
    for name, wall, cpu, acc in ours:
        print(f"{'auditq':<10}{name:<8}{wall:>9.2f}{cpu:>9.2f}{acc:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
