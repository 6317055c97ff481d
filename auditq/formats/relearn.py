"""Relearning attacks as a transformation: ``relearn:<retain|generic|forget>[:steps=N][:lr=X][:lora=R]``.

A short, seeded, deterministic fine-tune of the model, applied identically to BASE, UNLEARNED
and RETRAIN (same data, same order, same seed), measured, then undone (auditq.checkpoint.restore.restored_model):
the in-memory full-precision copy is exactly as before. Data: auditq.formats.relearn_data.

Recipe: causal-LM NLL on every token of each training text (BOS + text, as the probes tokenize
it), AdamW (betas 0.9/0.999, no weight decay), constant lr, gradient norm clipped at 1.0,
batches of ``batch`` texts (default 8) drawn from seeded permutations (epoch after epoch).
Full fine-tune by default; ``lora=R`` trains LoRA adapters (peft, rank R, alpha 2R, no dropout,
every nn.Linear but the head) and scores the model with the adapters active (not merged).
The math runs in float32: a bf16/fp16 model is upcast for the fine-tune and cast back to its
dtype before it is scored (LoRA adapters are float32 already). Device: wherever the model is.

What changed is counted and reported (changed_tensors, changed_elements, covered_parameters_share):
for a full fine-tune every parameter against a copy taken before training, in the model's dtype (an
update that vanished in the cast back to bf16 is no change); for LoRA the non-zero entries of the
adapters' B matrices (they start at zero). A fine-tune that changed nothing makes the row UNKNOWN
(MeasurementError): it would repeat the untouched model.

Defaults: steps=30 (a few dozen, the budget the relearning papers' attacks use); lr "auto":
1e-5 full / 1e-4 LoRA for models of 10M parameters or more, 1e-3 below, full and LoRA (tiny
models such as the demo's are trained at lr ~3e-3; 1e-5 would not move them). See README.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch

from auditq.backends.torch_lm import TorchCausalLM
from auditq.checkpoint.restore import model_device, model_dtype, restored_model
from auditq.errors import BackendUnavailable, MeasurementError
from auditq.formats.base import Format, FormatContext, FormatSpec
from auditq.formats.linear_layers import ChangeCount, count_changed
from auditq.formats.options import RelearnOptions
from auditq.formats.relearn_data import scored_view, training_texts, view_note

MAX_TOKENS = 512
#: below this many parameters the "auto" learning rate is the tiny-model one (same cut as remediate's demo preset)
TINY_MODEL_PARAMS = 10_000_000
AUTO_LR = {("full", False): 1e-5, ("lora", False): 1e-4, ("full", True): 1e-3, ("lora", True): 1e-3}
PEFT_INSTALL_HINT = "pip install 'auditq[relearn]'"


def pick_lr(options: RelearnOptions, n_params: int) -> float:
    if options.lr is not None:
        return options.lr
    return AUTO_LR[("lora" if options.lora else "full", n_params < TINY_MODEL_PARAMS)]


def _batches(n: int, batch: int, steps: int, seed: int) -> list[list[int]]:
    """Index batches for `steps` steps: consecutive slices of seeded permutations of range(n)."""
    generator = torch.Generator().manual_seed(seed)
    pool: list[int] = []
    out = []
    for _ in range(steps):
        while len(pool) < min(batch, n):
            pool += torch.randperm(n, generator=generator).tolist()
        out.append(pool[:min(batch, n)])
        pool = pool[min(batch, n):]
    return out


def finetune(model: torch.nn.Module, sequences: list[list[int]], pad_id: int, options: RelearnOptions,
             lr: float, seed: int) -> list[float]:
    """Train `model` in place on token sequences; returns the loss of every step (before its update)."""
    device = model_device(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, betas=(0.9, 0.999), weight_decay=0.0)
    losses: list[float] = []
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model.train()
        for indices in _batches(len(sequences), options.batch, options.steps, seed):
            batch = [sequences[i] for i in indices]
            width = max(len(s) for s in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, seq in enumerate(batch):
                ids[row, :len(seq)] = torch.tensor(seq)
                mask[row, :len(seq)] = 1
            labels = ids.masked_fill(mask == 0, -100)
            loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
            if not torch.isfinite(loss):
                raise MeasurementError(f"relearning diverged (loss {float(loss)}) at step {len(losses) + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
        model.eval()
    for p in trainable:
        p.grad = None
    return losses


@contextmanager
def _tolerant_gptqmodel_probe():
    """peft 0.21 raises ImportError while wrapping ANY nn.Linear when gptqmodel is installed without
    optimum >= 1.24 (auditq's gptq extra needs no optimum). Inside this block that probe answers
    "no GPTQ layers" instead; peft's own modules are patched only for the duration and restored."""
    import importlib

    from peft import import_utils

    original = import_utils.is_gptqmodel_available

    def tolerant() -> bool:
        try:
            return original()
        except ImportError:
            return False

    patched = []
    for name in ("peft.tuners.lora.gptq", "peft.tuners.lora.awq", "peft.utils.quantization_utils", "peft.utils.other"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if getattr(module, "is_gptqmodel_available", None) is original:
            module.is_gptqmodel_available = tolerant
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            module.is_gptqmodel_available = original


def _is_quantized(model) -> bool:
    return bool(getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None) is not None)


def full_change(before: dict[str, torch.Tensor], model: torch.nn.Module, n_params: int) -> ChangeCount:
    """Elements a full fine-tune changed, in the model's own dtype (an update lost in the cast back is no change).

    `before` is a CPU copy of every parameter taken before the fine-tune (one extra copy of the model
    in its dtype, small next to the float32 copy and AdamW's two states the fine-tune itself holds).
    """
    change = ChangeCount(n_params)
    for name, param in model.named_parameters():
        change.add(name, param.numel(), count_changed(before[name], param.detach().cpu()))
    return change


def lora_change(peft_model, n_params: int) -> ChangeCount:
    """LoRA: the adapters' B matrices start at zero, so their non-zero entries are what the fine-tune changed.

    Covered: the base weights the adapters sit on (their share of the model's parameters).
    """
    change = ChangeCount(n_params)
    for name, module in peft_model.named_modules():
        lora_b, base = getattr(module, "lora_B", None), getattr(module, "base_layer", None)
        if lora_b is None or base is None or not hasattr(base, "weight") or not len(lora_b):
            continue
        nonzero = sum(int((adapter.weight != 0).sum()) for adapter in lora_b.values())
        change.add(f"{name}.base_layer.weight", base.weight.numel(), nonzero)
    return change


class Relearning(Format):
    engine = "auditq-relearn"

    def __init__(self, spec: FormatSpec, options: RelearnOptions) -> None:
        super().__init__(spec, options)
        self._runs: dict[str, dict[str, Any]] = {}
        self._view: dict[str, Any] = {}

    def suite_view(self, suite, seed: int = 0):
        if self.options.source != "forget":
            return suite
        self._view = view_note(suite, seed)
        return scored_view(suite, seed)

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        from auditq.probes.text import encode_sequences

        suite = ctx.suite
        if suite is None:
            raise MeasurementError(f"{self.name} needs the probe suite (FormatContext.suite)")
        texts = training_texts(self.options.source, suite, ctx.calibration_texts, ctx.seed)
        if not texts:
            raise MeasurementError(f"{self.name}: no {self.options.source} data to relearn on")
        limit = min(MAX_TOKENS, int(getattr(checkpoint.config, "max_position_embeddings", 0) or MAX_TOKENS))
        sequences = [s[:limit] for s in encode_sequences(checkpoint.tokenizer, list(texts)) if len(s) >= 2]
        model = checkpoint.model
        role = str(ctx.role or "unlearned")
        if _is_quantized(model) and not self.options.lora:
            raise MeasurementError(f"{self.name}: a quantized model can only be relearned with LoRA (add :lora=8)")
        n_params = sum(p.numel() for p in model.parameters())
        lr = pick_lr(self.options, n_params)
        # a full fine-tune moves every weight; LoRA moves none (only requires_grad / modules change)
        with restored_model(checkpoint, model, values=not self.options.lora):
            if self.options.lora:
                trained, losses = self._lora(model, sequences, checkpoint.pad_token_id, lr, ctx.seed)
                change = lora_change(trained, n_params)
            else:
                before = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}
                trained, losses = model, self._full(model, sequences, checkpoint.pad_token_id, lr, ctx.seed)
                change = full_change(before, model, n_params)
                del before
            self._runs[role] = {"lr": lr, "n_texts": len(sequences), "device": str(model_device(model)),
                                "loss_curve": [round(x, 5) for x in losses], **change.details()}
            try:
                change.require_change(self.name, "the fine-tune's updates vanished in the model's dtype"
                                      if not self.options.lora else "every LoRA update is zero")
                yield TorchCausalLM(trained, checkpoint.pad_token_id, checkpoint.eos_token_id,
                                    batch_size=ctx.batch_size, description=f"torch after {self.name}")
            finally:
                if trained is not model:
                    trained.unload()  # strip the LoRA layers: the original modules go back in place

    def _full(self, model, sequences, pad_id: int, lr: float, seed: int) -> list[float]:
        dtype = model_dtype(model)
        for p in model.parameters():
            p.requires_grad_(True)
        if dtype != torch.float32:
            model.float()
        try:
            return finetune(model, sequences, pad_id, self.options, lr, seed)
        finally:
            if dtype != torch.float32:
                model.to(dtype)

    def _lora(self, model, sequences, pad_id: int, lr: float, seed: int):
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise BackendUnavailable(f"relearn with lora needs peft ({exc})", install_hint=PEFT_INSTALL_HINT) from None
        rank = int(self.options.lora)
        with torch.random.fork_rng(devices=[]), _tolerant_gptqmodel_probe():
            torch.manual_seed(seed)  # LoRA A matrices are initialised at random
            peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                                          target_modules="all-linear", bias="none"))
        try:
            losses = finetune(peft_model, sequences, pad_id, self.options, lr, seed)
        except BaseException:
            peft_model.unload()
            raise
        return peft_model, losses

    def details(self):
        o = self.options
        info: dict[str, Any] = {
            "engine": self.engine, "engine_version": torch.__version__, "data": o.source, "steps": o.steps,
            "batch": o.batch, "method": f"LoRA r={o.lora} alpha={2 * o.lora} (peft)" if o.lora else "full fine-tune",
            "lr": o.lr if o.lr is not None else "auto", "optimizer": "AdamW, constant lr, clip 1.0, no weight decay",
            "applied_to": "base, unlearned and retrain alike (same data, order and seed)",
        }
        if o.lora:
            from auditq.formats.gptqmodel.env import package_version

            info["peft_version"] = package_version("peft")
        if self._runs:
            info["loss_curve"] = {role: run["loss_curve"] for role, run in self._runs.items()}
            last = list(self._runs.values())[-1]
            info.update(lr_used=last["lr"], n_texts=last["n_texts"], device=last["device"])
            counts = ("covered_tensors", "covered_elements", "covered_parameters_share", "changed_tensors",
                      "changed_elements")
            info.update({k: last[k] for k in counts if k in last})
            info["changes"] = {role: {k: run[k] for k in counts if k in run} for role, run in self._runs.items()}
        info.update(self._view)
        return info
