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

Published recipes: ``relearn:lucki``, ``relearn:uds``, ``relearn:deeb`` (auditq.formats.options.RELEARN_PRESETS;
order, optimizer, schedule and LoRA config in auditq.formats.relearn_recipe). The row's ``trainer`` details
are read from the optimizer and peft's config as they ran; its ``note`` says when its settings are weaker
than relearn:lucki's (a PASS there is weaker evidence), or how relearn:lucki was adapted to a small model.

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
from auditq.formats import relearn_recipe as recipes
from auditq.formats.options import RelearnOptions
from auditq.formats.relearn_data import scored_view, training_texts, view_note

MAX_TOKENS = 512  # auditq's own recipe (RelearnOptions.max_tokens); the presets set theirs
#: below this many parameters the "auto" learning rate is the tiny-model one (same cut as remediate's demo preset)
TINY_MODEL_PARAMS = 10_000_000
AUTO_LR = {("full", False): 1e-5, ("lora", False): 1e-4, ("full", True): 1e-3, ("lora", True): 1e-3}
PEFT_INSTALL_HINT = "pip install 'auditq[relearn]'"


def pick_lr(options: RelearnOptions, n_params: int) -> float:
    if options.lr is not None:
        return options.lr
    return AUTO_LR[("lora" if options.lora else "full", n_params < TINY_MODEL_PARAMS)]


def finetune(model: torch.nn.Module, sequences: list[list[int]], pad_id: int, options: RelearnOptions,
             lr: float, seed: int, recipe: "recipes.Recipe | None" = None) -> tuple[list[float], dict[str, Any]]:
    """Train `model` in place on token sequences (auditq.formats.relearn_recipe sets the order, optimizer and
    schedule); returns the loss of every step (before its update) and what the optimizer actually ran with."""
    device = model_device(model)
    recipe = recipe or recipes.plan(len(sequences), options, seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer, schedule = recipes.optimizer_and_schedule(trainable, options, lr, recipe)
    group = optimizer.param_groups[0]
    ran: dict[str, Any] = {"optimizer": type(optimizer).__name__, "betas": list(group["betas"]), "eps": group["eps"],
                           "weight_decay": group["weight_decay"], "steps": recipe.steps,
                           "warmup_steps": recipe.warmup_steps, "lr_curve": []}
    losses: list[float] = []
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model.train()
        for indices in recipe.batches:
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
            ran["lr_curve"].append(float(optimizer.param_groups[0]["lr"]))
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        model.eval()
    for p in trainable:
        p.grad = None
    return losses, ran


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
    stochastic = True  # data order and LoRA initialisation follow the seed

    def __init__(self, spec: FormatSpec, options: RelearnOptions) -> None:
        super().__init__(spec, options)
        self._runs: dict[str, dict[str, Any]] = {}
        self._view: dict[str, Any] = {}

    def suite_view(self, suite, seed: int = 0):
        if self.options.source != "forget":
            return suite
        self._view = view_note(suite, seed)
        return scored_view(suite, seed)

    def _sequences(self, checkpoint, ctx: FormatContext) -> list[list[int]]:
        """The training token sequences: the source's texts (the first `max_texts` for a preset that says so),
        each cut to `max_tokens` (and the model's context)."""
        from auditq.probes.text import encode_sequences

        if ctx.suite is None:
            raise MeasurementError(f"{self.name} needs the probe suite (FormatContext.suite)")
        texts = training_texts(self.options.source, ctx.suite, ctx.calibration_texts, ctx.seed)
        if self.options.max_texts is not None:
            texts = texts[:self.options.max_texts]
        if not texts:
            raise MeasurementError(f"{self.name}: no {self.options.source} data to relearn on")
        cap = self.options.max_tokens
        limit = min(cap, int(getattr(checkpoint.config, "max_position_embeddings", 0) or cap))
        return [s[:limit] for s in encode_sequences(checkpoint.tokenizer, list(texts)) if len(s) >= 2]

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        sequences = self._sequences(checkpoint, ctx)
        model = checkpoint.model
        role = str(ctx.role or "unlearned")
        if _is_quantized(model) and not self.options.lora:
            raise MeasurementError(f"{self.name}: a quantized model can only be relearned with LoRA (add :lora=8)")
        n_params = sum(p.numel() for p in model.parameters())
        lr = pick_lr(self.options, n_params)
        recipe = recipes.plan(len(sequences), self.options, ctx.seed)
        pad = checkpoint.pad_token_id
        # a full fine-tune moves every weight; LoRA moves none (only requires_grad / modules change)
        with restored_model(checkpoint, model, values=not self.options.lora):
            if self.options.lora:
                trained, losses, ran = self._lora(model, sequences, pad, lr, ctx.seed, recipe)
                change = lora_change(trained, n_params)
            else:
                before = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}
                trained, (losses, ran) = model, self._full(model, sequences, pad, lr, ctx.seed, recipe)
                change = full_change(before, model, n_params)
                del before
            self._runs[role] = {"lr": lr, "n_texts": len(sequences), "device": str(model_device(model)),
                                "loss_curve": [round(x, 5) for x in losses], "trainer": ran,
                                "adaptations": list(recipe.adaptations), **change.details()}
            try:
                change.require_change(self.name, "the fine-tune's updates vanished in the model's dtype"
                                      if not self.options.lora else "every LoRA update is zero")
                yield TorchCausalLM(trained, pad, checkpoint.eos_token_id,
                                    batch_size=ctx.batch_size, description=f"torch after {self.name}")
            finally:
                if trained is not model:
                    trained.unload()  # strip the LoRA layers: the original modules go back in place

    def _full(self, model, sequences, pad_id: int, lr: float, seed: int, recipe):
        dtype = model_dtype(model)
        for p in model.parameters():
            p.requires_grad_(True)
        if dtype != torch.float32:
            model.float()
        try:
            return finetune(model, sequences, pad_id, self.options, lr, seed, recipe)
        finally:
            if dtype != torch.float32:
                model.to(dtype)

    def _lora(self, model, sequences, pad_id: int, lr: float, seed: int, recipe):
        try:
            from peft import get_peft_model
            config = recipes.lora_config(model, self.options, recipe)
        except ImportError as exc:
            raise BackendUnavailable(f"relearn with lora needs peft ({exc})", install_hint=PEFT_INSTALL_HINT) from None
        with torch.random.fork_rng(devices=[]), _tolerant_gptqmodel_probe():
            torch.manual_seed(seed)  # LoRA A matrices are initialised at random
            peft_model = get_peft_model(model, config)
        applied = peft_model.peft_config["default"]
        targets = applied.target_modules
        lora = {"r": applied.r, "lora_alpha": applied.lora_alpha, "lora_dropout": applied.lora_dropout,
                "target_modules": sorted(targets) if isinstance(targets, (set, list, tuple)) else targets}
        try:
            losses, ran = finetune(peft_model, sequences, pad_id, self.options, lr, seed, recipe)
        except BaseException:
            peft_model.unload()
            raise
        return peft_model, losses, {**ran, "lora": lora}

    def details(self):
        o = self.options
        info: dict[str, Any] = {
            "engine": self.engine, "engine_version": torch.__version__, "data": o.source,
            **recipes.describe(o), "lr": o.lr if o.lr is not None else "auto",
            "applied_to": "base, unlearned and retrain alike (same data, order and seed)",
        }
        if o.preset:
            info["preset"] = f"relearn:{o.preset}"
        if o.lora:
            from auditq.formats.gptqmodel.env import package_version

            info["peft_version"] = package_version("peft")
        last = list(self._runs.values())[-1] if self._runs else {}
        if self._runs:
            info["loss_curve"] = {role: run["loss_curve"] for role, run in self._runs.items()}
            info.update(lr_used=last["lr"], n_texts=last["n_texts"], device=last["device"], trainer=last["trainer"])
            counts = ("covered_tensors", "covered_elements", "covered_parameters_share", "changed_tensors",
                      "changed_elements")
            info.update({k: last[k] for k in counts if k in last})
            info["changes"] = {role: {k: run[k] for k in counts if k in run} for role, run in self._runs.items()}
            if last["adaptations"]:
                info["adaptations"] = last["adaptations"]
        note = recipes.strength_note(o, last.get("lr"), last.get("trainer", {}).get("steps"),
                                     last.get("adaptations", []))
        if note:
            info["note"] = note
        info.update(self._view)
        return info
