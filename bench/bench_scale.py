"""Benchmark an audit of real model SHAPES against the roofline process: seconds, tokens/s, peak memory.

    python bench/bench_scale.py --shape small -f fp,rtn8,rtn4 [--threads 2] [--device cpu] [--dtype auto]
    python bench/bench_scale.py --shape qwen2.5-0.5b --estimate-only
    python bench/bench_scale.py --shape llama-3.2-1b --device cuda --dtype bfloat16 --build-device cuda --json f.json

Builds random-init trios (base; unlearned = base + small noise; retrain = another seed) of a real
architecture shape with its real vocabulary size, saved as bf16 safetensors in a scratch dir (the
tokenizer is a small BPE trained on the suite: the model's vocabulary rows are real, the tokenizer
uses only the first few thousand). Then, each in its own fresh process:

- the audit: auditq.audit.pipeline.run_audit exactly as `auditq check` builds it (BASE, UNLEARNED, RETRAIN,
  every format, the bundled 60-record suite, no result cache);
- the roofline: the same imports, each checkpoint loaded once (one resident at a time) and one batched
  forward pass (batches of 8 sorted by length, logits + log-softmax) over every text and QA pair of
  the suite, once per format: the least work any audit of those tokens can do;
- the roofline + generated tokens (skip with --no-roofline-generation): the roofline's work plus one
  parallel forward over the sequences the audit's greedy generation ends with (VerbMem prompts + their new
  tokens, KnowMem prompts + `answer_tokens`), since the audit must also produce those tokens' logits.

Prints whole-process wall time, per-stage seconds, tokens/s and peak memory (CPU max RSS; on CUDA
also peak allocated), and the targets: wall ≤ 1.3 × roofline, peak ≤ roofline + 0.3 × one model (CPU) or
CUDA peak allocated ≤ 1.3 × one model + 0.5 GiB (GPU), and auditq's printed estimate against the measured
peak. `--json PATH` writes the same figures as JSON (bench/gpu_check.py reads it). `--build-device cuda`
builds the random-init trio on the GPU (a 7B trio is minutes of CPU random init). It asserts nothing. The machine's load (os.getloadavg) is printed next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {
    # a few-MB Llama with a 4k vocabulary: the CPU stand-in of bench/gpu_check.py's tests (seconds, not minutes)
    "tiny": dict(arch="llama", hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=4096, tie_word_embeddings=False),
    # Qwen2 architecture, 57M parameters (untied), 32k vocabulary
    "small": dict(arch="qwen2", hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=2, vocab_size=32000, tie_word_embeddings=False),
    "qwen2.5-0.5b": dict(arch="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "llama-3.2-1b": dict(arch="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True,
                         head_dim=64),
    "llama-2-7b": dict(arch="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=32, vocab_size=32000, tie_word_embeddings=False),
}
NOISE = 1e-3  # unlearned = base + N(0, (NOISE · std of the tensor)^2)


def _config(shape: str, tokenizer):
    from transformers import LlamaConfig, Qwen2Config

    spec = dict(SHAPES[shape])
    arch = spec.pop("arch")
    cls = Qwen2Config if arch == "qwen2" else LlamaConfig
    return cls(**spec, max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _tokenizer(suite):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [r.text for s in ("forget", "retain", "holdout") for r in suite.split(s).texts]
    texts += [f"Question: {q.question}\nAnswer: {q.answer}" for s in ("forget", "retain") for q in suite.split(s).qa]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=4000, special_tokens=["<pad>", "<s>", "</s>"],
                                                        show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bos = core.token_to_id("<s>")
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def parameter_count(shape: str) -> int:
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast  # noqa: F401

    class _Tok:
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(_config(shape, _Tok()))
    return sum(p.numel() for p in model.parameters())


def build_trio(shape: str, root: Path, log, device: str = "cpu") -> dict[str, Path]:
    """base, unlearned (= base + small noise), retrain (another seed): bf16 safetensors, one model in memory.

    `device`: where the random init and the noise are computed (cuda: seconds for a 7B model instead of minutes).
    The weights differ between devices (other random streams); each device's build is deterministic."""
    import torch
    from transformers import AutoModelForCausalLM

    from auditq.suite.records import bundled_suite_dir, load_suite

    suite = load_suite(bundled_suite_dir())
    tokenizer = _tokenizer(suite)
    config = _config(shape, tokenizer)
    paths = {}
    for role, seed in (("base", 0), ("unlearned", 0), ("retrain", 1)):
        start = time.perf_counter()
        torch.manual_seed(seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        if role == "unlearned":
            gen = torch.Generator(device=device).manual_seed(123)
            with torch.no_grad():
                for param in model.parameters():
                    scale = float(param.float().std()) * NOISE if param.numel() > 1 else 0.0
                    param.add_((torch.randn(param.shape, generator=gen, device=device) * scale).to(param.dtype))
        paths[role] = root / role
        model.save_pretrained(paths[role], safe_serialization=True)
        tokenizer.save_pretrained(paths[role])
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        log(f"built {role} ({shape}) in {time.perf_counter() - start:.1f} s")
    return paths


# --------------------------------------------------------------------------- child processes


def _peak() -> dict:
    import resource

    import torch

    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {"max_rss_gib": usage.ru_maxrss / (1 << 20), "cpu_s": usage.ru_utime + usage.ru_stime}
    if torch.cuda.is_available():
        out["cuda_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / (1 << 30)
    return out


def child_audit(args) -> dict:
    import torch

    import auditq.cli.app  # noqa: F401 - the imports `auditq check` pays for
    from auditq.audit.pipeline import Events, run_audit
    from auditq.audit.request import audit_request
    from auditq.checkpoint.placement import ComputeRequest
    from auditq.suite.records import bundled_suite_dir
    from auditq.verdict.config import AuditConfig

    torch.set_num_threads(args.threads)
    paths = json.loads(args.paths)
    said: list[str] = []

    class Say(Events):
        def say(self, message: str) -> None:
            said.append(message)

    request = audit_request(base=Path(paths["base"]), unlearned=Path(paths["unlearned"]), retrain=Path(paths["retrain"]),
                            suite=bundled_suite_dir(), formats=tuple(args.formats.split(",")), config=AuditConfig(),
                            compute=ComputeRequest(device=args.device, dtype=args.dtype, device_map=args.device_map),
                            max_batch_tokens=args.max_batch_tokens)  # batch size: auditq check's default
    start = time.perf_counter()
    outcome = run_audit(request, Say())
    return {"audit_s": time.perf_counter() - start, "stages": outcome.timings, "verdict": outcome.report.verdict,
            "said": said, "dtype": outcome.report.formats[0].details.get("dtype"),
            "device": outcome.report.formats[0].details.get("device"), **_peak()}


def child_roofline(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import auditq.audit.pipeline  # noqa: F401
    import auditq.cli.app  # noqa: F401 - the same imports as the audit
    from auditq.checkpoint.placement import ComputeRequest, resolve
    from auditq.suite.records import bundled_suite_dir, load_suite

    torch.set_num_threads(args.threads)
    paths = json.loads(args.paths)
    placement = resolve(ComputeRequest(device=args.device, dtype=args.dtype, device_map=args.device_map),
                        Path(paths["base"]))
    suite = load_suite(bundled_suite_dir())
    texts = [r.text for s in ("forget", "retain", "holdout") for r in suite.split(s).texts]
    # every QA pair of the suite, holdout included (the audit asks the holdout questions too)
    texts += [suite.settings.qa_template.format(question=q.question) + " " + q.answer
              for s in ("forget", "retain", "holdout") for q in suite.split(s).qa]
    tokenizer = AutoTokenizer.from_pretrained(paths["base"])
    seqs = sorted((tokenizer(t)["input_ids"] for t in texts), key=len, reverse=True)
    generated = _generation_sequences(suite, tokenizer)
    n_formats = len(args.formats.split(","))
    stages = {"load": 0.0, "forward": 0.0, "forward_generated": 0.0}
    tokens = generated_tokens = 0
    for role in ("base", "unlearned", "retrain"):
        start = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(paths[role], dtype=placement.dtype,
                                                     **({"device_map": "auto"} if placement.device_map else {}))
        if not placement.device_map:
            model.to(placement.device)
        model.eval()
        _sync()
        stages["load"] += time.perf_counter() - start
        start = time.perf_counter()
        with torch.inference_mode():
            for _ in range(n_formats):
                tokens += _forward_all(model, seqs, tokenizer.pad_token_id, placement.device)
        _sync()  # CUDA runs asynchronously: a stage ends when the GPU has finished its work
        stages["forward"] += time.perf_counter() - start
        if args.child == "roofline-gen":
            start = time.perf_counter()
            with torch.inference_mode():
                for _ in range(n_formats):
                    generated_tokens += _forward_all(model, generated, tokenizer.pad_token_id, placement.device)
            _sync()
            stages["forward_generated"] += time.perf_counter() - start
        del model
        import gc

        gc.collect()
    return {"stages": stages, "tokens": tokens, "generated_tokens": generated_tokens, **_peak()}


def _sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _forward_all(model, seqs, pad_id: int, device) -> int:
    """One batched forward + log-softmax over `seqs` (batches of 8, longest first); returns the real tokens."""
    import torch

    tokens = 0
    for i in range(0, len(seqs), 8):
        batch = seqs[i:i + 8]
        width = len(batch[0])
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, s in enumerate(batch):
            ids[row, :len(s)] = torch.tensor(s)
            mask[row, :len(s)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        torch.log_softmax(logits.float(), dim=-1)
        tokens += int(mask.sum())
        del logits
    return tokens


def _generation_sequences(suite, tokenizer) -> list[list[int]]:
    """The sequences the audit's greedy generation ends with (prompt + every new token), as one forward.

    VerbMem: each forget/holdout text's first `prefix_tokens` tokens + `max_new_tokens` (capped by what the
    text has left, as the probe's reference is); KnowMem: each question's prompt + `answer_tokens` (random
    models never stop early). Forwarding them in parallel is the least work that yields those tokens' logits:
    real generation needs one step per new token. Filler id 0 stands in for the generated tokens.
    """
    settings = suite.settings
    out = []
    for split in ("forget", "holdout"):
        for record in suite.split(split).texts:
            ids = tokenizer(record.text)["input_ids"]
            if len(ids) <= settings.prefix_tokens:
                continue
            new = min(settings.max_new_tokens, len(ids) - settings.prefix_tokens)
            out.append(ids[:settings.prefix_tokens] + [0] * new)
    for split in ("forget", "retain", "holdout"):
        for record in suite.split(split).qa:
            ids = tokenizer(settings.qa_template.format(question=record.question))["input_ids"]
            out.append(ids + [0] * settings.answer_tokens)
    return sorted(out, key=len, reverse=True)


def _start_child(mode: str, args, paths: dict):
    cmd = [sys.executable, __file__, "--child", mode, "--paths", json.dumps({k: str(v) for k, v in paths.items()}),
           "--shape", args.shape, "-f", args.formats, "--threads", str(args.threads), "--device", args.device,
           "--dtype", args.dtype, "--max-batch-tokens", str(args.max_batch_tokens)]
    if args.device_map:
        cmd += ["--device-map", args.device_map]
    return mode, time.perf_counter(), subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish_child(started) -> dict:
    mode, start, proc = started
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{mode} child failed ({proc.returncode}): {stderr.strip().splitlines()[-3:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("-f", "--formats", default="fp,rtn8,rtn4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device-map", default=None)
    parser.add_argument("--max-batch-tokens", type=int, default=4096)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the trio here (default: a temp dir, removed)")
    parser.add_argument("--parallel", action="store_true",
                        help="run the roofline and the audit at the same time (a shared, loaded machine)")
    parser.add_argument("--no-roofline-generation", dest="roofline_generation", action="store_false",
                        help="skip the second roofline process (suite + the tokens the audit generates)")
    parser.add_argument("--estimate-only", action="store_true", help="print parameters and the memory estimate only")
    parser.add_argument("--build-device", default="cpu", help="where the random-init trio is computed (cpu or cuda)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--child", choices=["audit", "roofline", "roofline-gen"], help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child_audit(args) if args.child == "audit" else child_roofline(args)
        print(json.dumps(result))
        return

    import torch

    from auditq.checkpoint.placement import GIB, cpu_available_bytes, needed_bytes

    n = parameter_count(args.shape)
    print(f"shape {args.shape}: {n / 1e6:.1f}M parameters; one model: {n * 4 / GIB:.2f} GiB float32, "
          f"{n * 2 / GIB:.2f} GiB bfloat16; auditq's estimate with one model resident: "
          f"~{needed_bytes(n, torch.float32) / GIB:.1f} GiB float32, ~{needed_bytes(n, torch.bfloat16) / GIB:.1f} GiB "
          f"bfloat16 (this machine: {(cpu_available_bytes() or 0) / GIB:.1f} GiB available)")
    if args.estimate_only:
        return
    root = args.workdir or Path(tempfile.mkdtemp(prefix="auditq-bench-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        paths = build_trio(args.shape, root, lambda m: print(f"  {m}", file=sys.stderr), args.build_device)
        build_s = time.perf_counter() - start
        print(f"build trio: {build_s:.1f} s on {args.build_device} (not part of either figure)")
        load_before = os.getloadavg()
        if args.parallel:  # on a machine loaded by other work, both suffer the same load
            started = [_start_child("roofline", args, paths), _start_child("audit", args, paths)]
            roof, audit = (_finish_child(s) for s in started)
        else:
            roof = _finish_child(_start_child("roofline", args, paths))
            audit = _finish_child(_start_child("audit", args, paths))
        gen_roof = _finish_child(_start_child("roofline-gen", args, paths)) if args.roofline_generation else None
        load_after = os.getloadavg()
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    dtype_bytes = 2 if audit.get("dtype") in ("bfloat16", "float16") else 4
    one_model = n * dtype_bytes / GIB
    per_pass = roof["tokens"]
    print(f"machine load (1-min average) before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"on {os.cpu_count()} cores; threads {args.threads}")
    print(f"device {audit.get('device')}, dtype {audit.get('dtype')}; one model {one_model:.2f} GiB; "
          f"suite tokens per model per format: {per_pass // (3 * len(args.formats.split(',')))}")
    for line in audit.get("said", []):
        print(f"  auditq: {line}")
    print(f"roofline: wall {roof['wall_s']:7.1f} s  peak RSS {roof['max_rss_gib']:.2f} GiB  "
          f"forward {roof['stages']['forward']:.1f} s ({per_pass / max(roof['stages']['forward'], 1e-9):.0f} tokens/s)  "
          f"load {roof['stages']['load']:.1f} s" +
          (f"  CUDA peak {roof['cuda_peak_allocated_gib']:.2f} GiB" if "cuda_peak_allocated_gib" in roof else ""))
    print(f"audit:    wall {audit['wall_s']:7.1f} s  peak RSS {audit['max_rss_gib']:.2f} GiB  verdict {audit['verdict']}  "
          f"({per_pass / max(audit['audit_s'], 1e-9):.0f} suite tokens/s over the whole audit)" +
          (f"  CUDA peak {audit['cuda_peak_allocated_gib']:.2f} GiB" if "cuda_peak_allocated_gib" in audit else ""))
    for stage, seconds in sorted(audit["stages"].items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<24} {seconds:8.2f} s")
    print(f"CPU seconds (user+sys, less sensitive to other load): roofline {roof['cpu_s']:.1f} s, "
          f"audit {audit['cpu_s']:.1f} s ({audit['cpu_s'] / max(roof['cpu_s'], 1e-9):.2f}×)"
          + ("; both ran at the same time (--parallel)" if args.parallel else ""))
    ratio = audit["wall_s"] / roof["wall_s"]
    limit = roof["max_rss_gib"] + 0.3 * one_model
    print(f"target wall ≤ 1.3 × roofline: {ratio:.2f}× ({'met' if ratio <= 1.3 else 'NOT met'})")
    if gen_roof:
        gen = gen_roof["stages"]["forward_generated"]
        print(f"roofline + generated tokens (a third process: the roofline's work plus one parallel forward over "
              f"the {gen_roof['generated_tokens']} tokens the audit generates, {gen:.1f} s): wall "
              f"{gen_roof['wall_s']:.1f} s, CPU {gen_roof['cpu_s']:.1f} s, peak RSS {gen_roof['max_rss_gib']:.2f} GiB; "
              f"audit {audit['wall_s'] / gen_roof['wall_s']:.2f}× its wall, "
              f"{audit['cpu_s'] / max(gen_roof['cpu_s'], 1e-9):.2f}× its CPU seconds")
    print(f"target peak RSS ≤ roofline + 0.3 × one model = {limit:.2f} GiB: {audit['max_rss_gib']:.2f} GiB "
          f"({'met' if audit['max_rss_gib'] <= limit else 'NOT met'})")
    on_cpu = audit.get("device") == "cpu"
    estimate = needed_bytes(n, torch.bfloat16 if dtype_bytes == 2 else torch.float32, "cpu" if on_cpu else "cuda") / GIB
    measured = audit["max_rss_gib"] if on_cpu else audit.get("cuda_peak_allocated_gib")
    cuda_limit = 1.3 * one_model + 0.5
    if on_cpu:
        print(f"auditq's printed estimate ~{estimate:.2f} GiB vs the audit's peak RSS {audit['max_rss_gib']:.2f} GiB "
              f"({'an over-estimate: refusals err on the safe side' if estimate >= audit['max_rss_gib'] else 'an UNDER-estimate'})")
    elif measured is not None:
        print(f"target CUDA peak allocated ≤ 1.3 × one model + 0.5 GiB = {cuda_limit:.2f} GiB: {measured:.2f} GiB "
              f"({'met' if measured <= cuda_limit else 'NOT met'}); roofline CUDA peak "
              f"{roof.get('cuda_peak_allocated_gib', float('nan')):.2f} GiB")
        print(f"auditq's printed estimate ~{estimate:.2f} GiB vs the audit's CUDA peak allocated {measured:.2f} GiB "
              f"({'an over-estimate: refusals err on the safe side' if estimate >= measured else 'an UNDER-estimate'})")
    if args.json:
        same_tokens = gen_roof["wall_s"] if gen_roof else None
        figures = {
            "shape": args.shape, "parameters": n, "device": audit.get("device"), "dtype": audit.get("dtype"),
            "formats": args.formats.split(","), "threads": args.threads, "build_device": args.build_device,
            "build_s": round(build_s, 2), "one_model_gib": round(one_model, 4),
            "suite_tokens": per_pass, "generated_tokens": gen_roof["generated_tokens"] if gen_roof else None,
            "load_before": load_before[0], "load_after": load_after[0], "verdict": audit["verdict"],
            "said": audit.get("said", []),
            "audit": {k: audit.get(k) for k in ("wall_s", "audit_s", "cpu_s", "max_rss_gib", "cuda_peak_allocated_gib")},
            "audit_stages_s": {k: round(v, 3) for k, v in audit["stages"].items()},
            "audit_suite_tokens_per_s": per_pass / max(audit["audit_s"], 1e-9),
            "roofline": {**{k: roof.get(k) for k in ("wall_s", "cpu_s", "max_rss_gib", "cuda_peak_allocated_gib")},
                         "stages_s": roof["stages"],
                         "forward_tokens_per_s": per_pass / max(roof["stages"]["forward"], 1e-9)},
            "roofline_same_tokens": None if not gen_roof else {
                **{k: gen_roof.get(k) for k in ("wall_s", "cpu_s", "max_rss_gib", "cuda_peak_allocated_gib")},
                "stages_s": gen_roof["stages"],
                "tokens_per_s": (per_pass + gen_roof["generated_tokens"]) / max(
                    gen_roof["stages"]["forward"] + gen_roof["stages"]["forward_generated"], 1e-9)},
            "wall_ratio_suite_roofline": ratio,
            "wall_ratio_same_tokens_roofline": audit["wall_s"] / same_tokens if same_tokens else None,
            "estimate_gib": round(estimate, 4), "measured_peak_gib": measured,
            "estimate_is_over": None if measured is None else estimate >= measured,
            "targets": {
                "wall_le_1.3x_same_tokens_roofline": None if not same_tokens else audit["wall_s"] <= 1.3 * same_tokens,
                **({"peak_rss_le_roofline_plus_0.3_model": audit["max_rss_gib"] <= limit} if on_cpu else
                   {"cuda_peak_le_1.3_model_plus_0.5": None if measured is None else measured <= cuda_limit,
                    "cuda_peak_limit_gib": round(cuda_limit, 4)}),
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
