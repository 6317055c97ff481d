"""Shared plumbing for the GPTQ, AWQ and bitsandbytes formats (engines imported lazily, here only).

- ``engine_env``: contains GPTQModel's process-wide side effects. Importing it sets HF_HOME
  (creating /tmp/tokenicer_hf_home when unset), PYTORCH_ALLOC_CONF, CUDA_DEVICE_ORDER ... in
  ``os.environ``, quantizing writes ``./logs``,
  packing JIT-compiles a C++ extension into ``~/.cache/gptqmodel`` and its logger draws
  progress bars on stdout. Inside the context the cwd is a scratch dir, packing uses the
  pure-torch path (``GPTQMODEL_DISABLE_PACK_EXT=1`` unless the user set it: byte-identical
  output, no compiler needed), stdout/stderr go to a log file, and on exit the environment,
  cwd, torch thread count and default dtype are put back exactly.
- ``saved_source``: the Checkpoint's in-memory model written once per checkpoint and workdir
  as safetensors (engines load from a directory); the in-memory model is only read.
- ``quantize_with_gptqmodel`` / ``load_quantized`` / ``dequantized_model``: quantize, load a
  GPTQ or AWQ checkpoint back through GPTQModel's own kernels (the deployed path), or rebuild
  a plain float32 model from exactly dequantized weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from auditq.errors import BackendUnavailable, InputError, MeasurementError

GPTQ_INSTALL_HINT = "pip install 'auditq[gptq]'"
BNB_INSTALL_HINT = "pip install 'auditq[bnb]'"
DEFAULT_GROUP_SIZE = 128
#: gptqmodel drops calibration texts shorter than this many tokens (its own default)
CALIBRATION_MIN_TOKENS = 10


class ArtifactMissing(BackendUnavailable):
    """No quantized checkpoint was given for this role (e.g. only the unlearned model's)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def package_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001 - informational
        return None


def pick_device(ctx) -> str:
    """CUDA when available (or ctx.extra["device"]), else CPU."""
    requested = (ctx.extra or {}).get("device")
    if requested:
        return str(requested)
    return "cuda" if torch.cuda.is_available() else "cpu"


def role_of(checkpoint, ctx) -> str:
    return str((ctx.extra or {}).get("role") or Path(str(checkpoint.path)).name or "model")


# --------------------------------------------------------------------------- side effects


@contextlib.contextmanager
def engine_env(workdir: Path, log_name: str = "gptqmodel.log") -> Iterator[Path]:
    """Run GPTQModel inside a scratch cwd with its env, output and torch globals contained."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    saved_env = dict(os.environ)
    cwd = os.getcwd()
    threads = torch.get_num_threads()
    dtype = torch.get_default_dtype()
    log_path = workdir / log_name
    sink = io.StringIO()  # never closed: GPTQModel's logger may flush from a worker thread later
    os.environ.setdefault("GPTQMODEL_DISABLE_PACK_EXT", "1")
    arrange_worker_pools()
    # ~/.cache/gptqmodel: where its JIT-compiled extensions would go (unused with the pure-torch path)
    os.environ.setdefault("GPTQMODEL_TORCH_EXTENSIONS_DIR", str(workdir / "torch_extensions"))
    # tokenicer (imported by gptqmodel) points an unset HF_HOME at /tmp/tokenicer_hf_home and creates it
    os.environ.setdefault("HF_HOME", str(workdir / "hf_home"))
    # importing it (torchao) creates torch inductor's cache dir, /tmp/torchinductor_<user> by default
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(workdir / "torchinductor"))
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield log_path
    finally:
        os.chdir(cwd)
        for key in [k for k in os.environ if k not in saved_env]:
            del os.environ[key]
        for key, value in saved_env.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
        try:
            with open(log_path, "a", encoding="utf-8") as handle:
                handle.write(sink.getvalue())
        except OSError:
            pass


#: GPTQModel 7.6's `model_loader:cpu` virtual pool asks for this many workers of its `cpu` pool
LOADER_POOL_WORKERS = 2


def arrange_worker_pools() -> None:
    """Give GPTQModel's CPU pool enough workers for its own loader pool, on any number of cores.

    GPTQModel 7.6 sizes its `cpu` pool as (cores + 1) // 2 and then carves a 2-worker
    `model_loader:cpu` pool out of it: on a 1- or 2-core machine that raises "Virtual pool
    'model_loader:cpu' requests 2 workers but parent 'cpu' only has 1". The pool is built once
    per process, on first use, from GPTQMODEL_CPU_WORKERS; raise that to the loader's need
    (a user's larger value, and GPTQModel's default on bigger machines, are kept). Called inside
    engine_env, whose exit restores the variable; the pool keeps its size for the process.
    """
    given = os.environ.get("GPTQMODEL_CPU_WORKERS", "")
    if given.strip().isdigit():
        workers = int(given)
    else:  # GPTQModel's own default on a GIL build (not imported here: importing it has side effects)
        workers = min(12, max(1, ((os.cpu_count() or 1) + 1) // 2))
    os.environ["GPTQMODEL_CPU_WORKERS"] = str(max(LOADER_POOL_WORKERS, workers))


def require_gptqmodel(workdir: Path, what: str = "the gptq and awq formats"):
    """Import gptqmodel (inside engine_env) or raise BackendUnavailable with the install hint."""
    import warnings

    try:
        with engine_env(workdir), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script_method in its dependencies
            import gptqmodel
            from gptqmodel import BACKEND, GPTQModel, QuantizeConfig  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(f"{what} need GPTQModel ({exc})", install_hint=GPTQ_INSTALL_HINT) from None
    except Exception as exc:  # noqa: BLE001 - a broken engine install is "unavailable", not a crash
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailable(f"GPTQModel failed to import: {first}", install_hint=GPTQ_INSTALL_HINT) from None
    return gptqmodel


# --------------------------------------------------------------------------- the source checkpoint


def checkpoint_key(checkpoint) -> str:
    """Stable key: the checkpoint's file fingerprints, else a hash of its weights."""
    digest = hashlib.sha256()
    hashes = getattr(checkpoint, "file_hashes", None)
    if hashes:
        digest.update(json.dumps(sorted(hashes.items())).encode())
    else:
        for name, tensor in checkpoint.model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


_SOURCES: dict[tuple[str, str], Path] = {}


def saved_source(checkpoint, workdir: Path) -> Path:
    """Write the in-memory model and its tokenizer once per checkpoint and workdir (safetensors)."""
    key = checkpoint_key(checkpoint)
    path = (Path(workdir) / "hf-source" / key).resolve()
    hit = _SOURCES.get((str(path), key))
    if hit is not None and (hit / "config.json").is_file():
        return hit
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    checkpoint.model.save_pretrained(path, safe_serialization=True)
    if checkpoint.tokenizer is not None:
        checkpoint.tokenizer.save_pretrained(path)
    _SOURCES[(str(path), key)] = path
    return path


def quantizable_linears(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The nn.Linear layers GPTQModel quantizes by default: everything but the output head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}


def default_group_size(model: torch.nn.Module, preferred: int = DEFAULT_GROUP_SIZE) -> int:
    """128, or the largest power of two below it that divides every quantized input width."""
    widths = [m.in_features for m in quantizable_linears(model).values()]
    if not widths:
        raise MeasurementError("the model has no nn.Linear layers to quantize")
    common = math.gcd(*widths)
    size = preferred
    while size > 1 and common % size:
        size //= 2
    if size < 16:
        raise MeasurementError(f"no usable group size: the linear input widths {sorted(set(widths))} "
                               f"share no power-of-two divisor of at least 16")
    return size


def check_group_size(model: torch.nn.Module, group_size: int, spec: str) -> None:
    bad = sorted({m.in_features for m in quantizable_linears(model).values() if m.in_features % group_size})
    if bad:
        raise MeasurementError(f"{spec}: group size {group_size} does not divide the linear input widths {bad}")


def calibration_stats(texts: tuple[str, ...] | list[str], tokenizer) -> tuple[int, int]:
    """(texts GPTQModel will keep, their tokens) under its minimum-length rule."""
    kept, tokens = 0, 0
    for text in texts:
        n = len(tokenizer(text)["input_ids"])
        if n >= CALIBRATION_MIN_TOKENS:
            kept += 1
            tokens += n
    return kept, tokens


def require_calibration(ctx, tokenizer, spec: str) -> tuple[list[str], dict[str, int]]:
    texts = [t for t in (ctx.calibration_texts or ()) if t and t.strip()]
    if not texts:
        raise MeasurementError(f"{spec} needs calibration texts (the suite's calibration file or retain split), "
                               "none were given")
    kept, tokens = calibration_stats(texts, tokenizer)
    if kept == 0:
        raise MeasurementError(f"{spec}: every calibration text is shorter than {CALIBRATION_MIN_TOKENS} tokens, "
                               "which GPTQModel drops")
    return texts, {"calibration_texts": len(texts), "calibration_texts_used": kept, "calibration_tokens": tokens}


# --------------------------------------------------------------------------- quantize and load back


@dataclass
class QuantizeRequest:
    method: str  # "gptq" | "awq"
    bits: int
    group_size: int
    desc_act: bool = False
    sym: bool = True
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    seed: int = 0
    extra_config: dict[str, Any] = field(default_factory=dict)


def quantize_with_gptqmodel(source: Path, out: Path, request: QuantizeRequest, texts: list[str], tokenizer,
                            workdir: Path) -> dict[str, Any]:
    """GPTQModel.load(source, QuantizeConfig(...)).quantize(texts).save(out); returns what it did."""
    require_gptqmodel(workdir)
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    info: dict[str, Any] = {}
    with engine_env(workdir) as log_path:
        from gptqmodel import BACKEND, GPTQModel, QuantizeConfig

        kwargs: dict[str, Any] = dict(bits=request.bits, group_size=request.group_size, sym=request.sym,
                                      offload_to_disk_path=str(Path(workdir).resolve() / "offload"),
                                      **request.extra_config)
        if request.method == "awq":
            kwargs.update(method="awq", format="gemm")
        else:
            kwargs.update(desc_act=request.desc_act)
        config = QuantizeConfig(**kwargs)
        backend = BACKEND.AUTO
        if request.method == "awq" and request.device == "cpu":
            backend = BACKEND.AWQ_TORCH
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(request.seed)
            model = GPTQModel.load(str(source), config, device=request.device, dtype=request.dtype)
            model.quantize(list(texts), tokenizer=tokenizer, backend=backend,
                           calibration_data_min_length=CALIBRATION_MIN_TOKENS)
        info["quantize_s"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        model.save(str(out))
        info["save_s"] = round(time.perf_counter() - start, 3)
        qc = model.quantize_config
        info["act_group_aware"] = bool(getattr(qc, "act_group_aware", False))
        info["engine_log"] = str(log_path)
        drop_weights(model)
        del model
    drop_engine_tracebacks()
    shutil.rmtree(Path(workdir).resolve() / "offload", ignore_errors=True)  # a full copy of the layers, on disk
    return info


def drop_weights(wrapper) -> None:
    """Free the quantize-time model's tensors now (moved to the meta device, no storage).

    GPTQModel 7.6's module looper stays reachable from a closure after quantize() returns, and with
    it the whole model it quantized: without this that copy lives until the next quantization.
    """
    inner = getattr(wrapper, "model", None)
    if isinstance(inner, torch.nn.Module):
        try:
            inner.to("meta")
        except Exception:  # noqa: BLE001 - best effort; the model is saved already
            pass


def drop_engine_tracebacks() -> None:
    """Let the quantize-time model go: GPTQModel raises one module-level StopForward instance to cut
    its calibration forward passes short, and that instance keeps the last traceback, whose frames
    hold the whole model it quantized (a second model alive until the next quantization)."""
    import sys

    hooked = sys.modules.get("gptqmodel.nn_modules.hooked_linear")
    stop = getattr(hooked, "STOP_FORWARD_EXCEPTION", None)
    if isinstance(stop, BaseException):
        stop.__traceback__ = None
        stop.__context__ = stop.__cause__ = None
    release_memory()


@contextlib.contextmanager
def _allow_float32(kernel_classes) -> Iterator[None]:
    """GPTQModel's torch kernels declare fp16/bf16 only but compute in any float dtype: let fp32 in."""
    saved = []
    for cls in kernel_classes:
        dtypes = list(getattr(cls, "SUPPORTS_DTYPES", []) or [])
        saved.append((cls, getattr(cls, "SUPPORTS_DTYPES", None)))
        if torch.float32 not in dtypes:
            cls.SUPPORTS_DTYPES = dtypes + [torch.float32]
    try:
        yield
    finally:
        for cls, dtypes in saved:
            if dtypes is not None:
                cls.SUPPORTS_DTYPES = dtypes


def quant_method(path: Path) -> str:
    """"gptq" or "awq" from a checkpoint dir's config.json quantization_config (InputError otherwise)."""
    config_path = Path(path) / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read config.json: {exc}") from None
    qc = config.get("quantization_config") or {}
    method = str(qc.get("quant_method") or qc.get("method") or "").lower()
    if method not in ("gptq", "awq"):
        raise InputError(f"{path} is not a GPTQ or AWQ checkpoint (quantization_config.quant_method is "
                         f"{method or 'missing'!r})")
    return method


def load_quantized(path: Path, device: str, workdir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a GPTQ/AWQ checkpoint through GPTQModel's kernels, the way it is deployed.

    CPU: GPTQ through ``TorchLinear`` with float32 activations (dequantized weights are exact
    in fp32, so this equals the dequantized model up to matmul rounding); AWQ through
    ``AwqTorchLinear``, whose forward computes in fp16 whatever the activation dtype. The
    rest of the model runs in float32 on CPU. CUDA: GPTQModel's automatic kernel choice in
    float16, the usual deployment.
    """
    require_gptqmodel(workdir)
    method = quant_method(path)
    info: dict[str, Any] = {"loader": "GPTQModel.load"}
    with engine_env(workdir):
        from gptqmodel import BACKEND, GPTQModel

        from auditq.formats.engine_devices import gptqmodel_kernel

        choice = gptqmodel_kernel(method, device, {m.name for m in BACKEND})
        backend = getattr(BACKEND, choice.backend)
        info["kernel_choice"] = choice.note
        if not device.startswith("cuda"):
            if method == "gptq":
                from gptqmodel.nn_modules.qlinear.torch import TorchLinear as kernel
            else:
                from gptqmodel.nn_modules.qlinear.torch_awq import (
                    AwqTorchLinear as kernel,
                )
            with _allow_float32([kernel]):
                loaded = GPTQModel.load(str(path), device="cpu", backend=backend, dtype=torch.float32)
            dtype = torch.float32
        else:  # CUDA: GPTQModel picks its CUDA kernel (never run on a GPU in auditq's own tests)
            dtype = torch.float16
            loaded = GPTQModel.load(str(path), device=device, backend=backend, dtype=dtype)
    model = loaded.model
    model.eval()
    kernels = sorted({type(m).__name__ for m in model.modules() if hasattr(m, "qweight")})
    for module in model.modules():
        # TorchLinear.post_init wraps its dequantizer in torch.compile (inductor: a C++ build on
        # first use, caches under /tmp); the eager method computes the same values.
        if "dequantize_weight" in vars(module):
            del module.dequantize_weight
    info.update(kernel=", ".join(kernels) or "?", compute_dtype=str(dtype).replace("torch.", ""),
                quant_method=method)
    if method == "awq" and device == "cpu":
        info["compute_dtype"] = "float16 matmuls in AwqTorchLinear, float32 elsewhere"
        info["note"] = "AwqTorchLinear casts activations to float16 for its matmuls and back"
    return model, info


def _awq_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Dequantize an AWQ GEMM checkpoint with AWQ's own unpacking (column order reversed)."""
    from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm
    from safetensors import safe_open

    config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    qc = config.get("quantization_config") or {}
    version = str(qc.get("version") or qc.get("format") or "gemm").lower()
    if version != "gemm":
        raise MeasurementError(f"{path}: AWQ {version!r} packing is not supported for dequantization (only gemm)")
    bits, group = int(qc.get("bits", 4)), int(qc.get("group_size", 128))
    raw: dict[str, torch.Tensor] = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        with safe_open(file, framework="pt", device="cpu") as reader:
            for key in reader.keys():
                raw[key] = reader.get_tensor(key)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        if key.endswith((".qweight", ".qzeros", ".scales")):
            continue
        state[key] = tensor
    for key in [k for k in raw if k.endswith(".qweight")]:
        prefix = key[: -len(".qweight")]
        scales = raw[prefix + ".scales"]
        weight = dequantize_gemm(raw[key], raw[prefix + ".qzeros"], scales, bits, group)  # (in, out), scales' dtype
        state[prefix + ".weight"] = weight.t().contiguous()
    return state


def dequantized_model(path: Path, workdir: Path, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """A plain float32 HF model holding the checkpoint's exactly dequantized weights.

    GPTQ: gptqmodel.utils.model_dequant.dequantize_model (exact for GPTQ v1/v2). AWQ: AWQ's
    dequantize_gemm (the generic dequantizer does not undo AWQ's interleaved packing order).
    """
    require_gptqmodel(workdir)
    method = quant_method(path)
    from transformers import AutoConfig, AutoModelForCausalLM

    with engine_env(workdir):
        if method == "gptq":
            from gptqmodel.utils.model_dequant import dequantize_model

            out = (Path(workdir) / "dequantized" / Path(path).name).resolve()
            if out.exists():
                shutil.rmtree(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            dequantize_model(Path(path), out, target_dtype=torch.float32)
            model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, local_files_only=True)
            shutil.rmtree(out, ignore_errors=True)
        else:
            state = _awq_state_dict(Path(path))
            config = AutoConfig.from_pretrained(path, local_files_only=True)
            if hasattr(config, "quantization_config"):
                delattr(config, "quantization_config")
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
            tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
            if unexpected or set(missing) - tied:
                raise MeasurementError(f"{path}: dequantized AWQ weights do not fit the model "
                                       f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
            if tied:
                model.tie_weights()
    model.to(device)
    model.eval()
    return model, {"loader": f"dequantized to float32 ({'model_dequant' if method == 'gptq' else 'AWQ dequantize_gemm'})",
                   "kernel": "torch nn.Linear", "compute_dtype": "float32", "quant_method": method}


@contextlib.contextmanager
def scoring(model, checkpoint, ctx, description: str):
    """Yield a loaded quantized model as a LanguageModel; drop it and free memory when the block ends."""
    from auditq.backends.torch_lm import TorchCausalLM

    lm = TorchCausalLM(model, checkpoint.pad_token_id, checkpoint.eos_token_id, batch_size=ctx.batch_size, max_batch_tokens=ctx.max_batch_tokens,
                       description=description)
    del model
    try:
        yield lm
    finally:
        lm.model = None
        release_memory()


def release_memory() -> None:
    """Collect a dropped model promptly (CUDA cache too)."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- shared Format base


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class GPTQModelFormat:
    """Mixin for formats that quantize with GPTQModel, save, and score the saved checkpoint.

    Subclasses (auditq.formats.gptq.GPTQFormat, auditq.formats.awq.AWQFormat) are Formats
    and define ``method``, ``options`` (bits, group_size, desc_act, dequant) and
    ``_request(...)``.
    """

    method = "gptq"
    needs_resident = False  # GPTQModel builds its own models: the resident copy is freed first

    def _request(self, group_size: int, device: str, seed: int) -> QuantizeRequest:  # pragma: no cover
        raise NotImplementedError

    @contextlib.contextmanager
    def apply(self, checkpoint, ctx):
        role = role_of(checkpoint, ctx)
        if ctx.workdir is None:
            raise MeasurementError(f"{self.name} needs a scratch directory (FormatContext.workdir)")
        require_gptqmodel(ctx.workdir)
        from auditq.formats.resident import free_resident, structure

        device = pick_device(ctx)
        shapes = structure(checkpoint)  # layer widths only: no weights read
        group_size = self.options.group_size or default_group_size(shapes)
        check_group_size(shapes, group_size, self.name)
        del shapes
        texts, calibration = require_calibration(ctx, checkpoint.tokenizer, self.name)
        start = time.perf_counter()
        source = saved_source(checkpoint, ctx.workdir)
        save_source_s = time.perf_counter() - start
        free_resident(checkpoint)  # GPTQModel loads the saved copy itself: one model at a time
        out = Path(ctx.workdir) / "gptqmodel" / checkpoint_key(checkpoint) / slug(self.name)
        request = self._request(group_size, device, ctx.seed)
        try:
            qinfo = quantize_with_gptqmodel(source, out, request, texts, checkpoint.tokenizer, ctx.workdir)
        except (BackendUnavailable, MeasurementError, InputError):
            raise
        except Exception as exc:
            from auditq.formats.engine_log import keep_log

            kept = keep_log(Path(ctx.workdir).resolve() / "gptqmodel.log", ctx.extra, f"gptqmodel-{self.name}-{role}")
            raise MeasurementError(f"{self.name}: GPTQModel could not quantize: {first_line(exc)}"
                                   + (f" (engine log: {kept})" if kept else "")) from exc
        if getattr(self, "has_codes", False):  # weight-space evidence (auditq.evidence)
            from auditq.evidence import CodeRecorder
            from auditq.formats.gptq_codes import record_gptq_codes

            recorder = CodeRecorder.for_context(ctx, self.name, (ctx.extra or {}).get("role"))
            try:
                record_gptq_codes(out, recorder)
            except Exception as exc:  # noqa: BLE001 - supplementary evidence never costs the row
                if recorder is not None:
                    recorder.fail(exc)
        start = time.perf_counter()
        try:
            if self.options.dequant:
                model, linfo = dequantized_model(out, ctx.workdir, device)
            else:
                model, linfo = load_quantized(out, device, ctx.workdir)
        except (BackendUnavailable, MeasurementError, InputError):
            raise
        except Exception as exc:
            from auditq.formats.engine_log import keep_log

            kept = keep_log(Path(ctx.workdir).resolve() / "gptqmodel.log", ctx.extra, f"gptqmodel-{self.name}-{role}")
            raise MeasurementError(f"{self.name}: cannot load the quantized checkpoint back: {first_line(exc)}"
                                   + (f" (engine log: {kept})" if kept else "")) from exc
        load_s = time.perf_counter() - start
        run: dict[str, Any] = {
            "group_size": group_size,
            "device": device,
            "quantize_dtype": str(request.dtype).replace("torch.", ""),
            **calibration,
            **{k: v for k, v in linfo.items() if k != "quant_method"},
            "timings_s": {"save_source": round(save_source_s, 3), "quantize": qinfo.get("quantize_s"),
                          "save": qinfo.get("save_s"), "load": round(load_s, 3)},
        }
        if self.method == "gptq":
            run["act_group_aware"] = qinfo.get("act_group_aware", False)
        keep = bool((ctx.extra or {}).get("keep_quantized", False))
        if keep:
            run["checkpoint_dir"] = str(out.resolve())
        self._runs[role] = run
        try:
            with scoring(model, checkpoint, ctx, f"{linfo.get('kernel')} {linfo.get('compute_dtype')} ({self.name})") as lm:
                del model
                yield lm
        finally:
            if not keep:
                shutil.rmtree(out, ignore_errors=True)

    def _base_details(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "engine": "gptqmodel",
            "engine_version": package_version("gptqmodel"),
            "method": self.method,
            "bits": self.options.bits,
            "group_size": self.options.group_size or f"auto (largest power of two <= {DEFAULT_GROUP_SIZE} "
                                                     "dividing every linear input width)",
            "scoring": "dequantized float32 weights" if self.options.dequant
                       else "saved checkpoint loaded back with GPTQModel",
            "quantized": "nn.Linear weights of the decoder layers; embeddings and lm_head stay in full precision",
        }
        return info

    def details(self) -> dict[str, Any]:
        info = self._base_details()
        if self._runs:
            last = list(self._runs.values())[-1]
            info.update(last)
            if len(self._runs) > 1:
                info["by_role"] = {role: {"calibration_texts_used": r.get("calibration_texts_used"),
                                          "timings_s": r.get("timings_s")} for role, r in self._runs.items()}
        return info
