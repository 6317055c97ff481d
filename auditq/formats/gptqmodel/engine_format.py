"""GPTQModelFormat, the Format base GPTQ and AWQ share: check, quantize, load back and score in one flow for both."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

from auditq.errors import BackendUnavailable, InputError, MeasurementError
from auditq.formats.gptqmodel.calibration import (
    DEFAULT_GROUP_SIZE,
    check_group_size,
    default_group_size,
    require_calibration,
)
from auditq.formats.gptqmodel.env import package_version, pick_device, release_memory, require_gptqmodel, role_of
from auditq.formats.gptqmodel.load import dequantized_model, load_quantized
from auditq.formats.gptqmodel.quantize import QuantizeRequest, checkpoint_key, quantize_with_gptqmodel, saved_source
from auditq.formats.gptqmodel.support import refuse_unsupported


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
    stochastic = True  # GPTQModel's calibration pass is seeded (QuantizeRequest.seed)
    needs_resident = False  # GPTQModel builds its own models: the resident copy is freed first

    def _request(self, group_size: int, device: str, seed: int) -> QuantizeRequest:  # pragma: no cover
        raise NotImplementedError

    @contextlib.contextmanager
    def apply(self, checkpoint, ctx):
        role = role_of(checkpoint, ctx)
        if ctx.workdir is None:
            raise MeasurementError(f"{self.name} needs a scratch directory (FormatContext.workdir)")
        refuse_unsupported(self.method, checkpoint, self.name)  # before the engine: it can end the process
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
        with self._engine_errors(ctx, role, "GPTQModel could not quantize"):
            qinfo = quantize_with_gptqmodel(source, out, request, texts, checkpoint.tokenizer, ctx.workdir)
        if getattr(self, "has_codes", False):  # weight-space evidence (auditq.audit.evidence)
            self._record_codes(ctx, out)
        start = time.perf_counter()
        with self._engine_errors(ctx, role, "cannot load the quantized checkpoint back"):
            if self.options.dequant:
                model, linfo = dequantized_model(out, ctx.workdir, device)
            else:
                model, linfo = load_quantized(out, device, ctx.workdir)
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
        keep = bool(ctx.keep_quantized)
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

    @contextlib.contextmanager
    def _engine_errors(self, ctx, role: str, what: str):
        """auditq's own errors pass through; anything GPTQModel raises becomes a MeasurementError naming `what`
        and the engine log kept for this row."""
        try:
            yield
        except (BackendUnavailable, MeasurementError, InputError):
            raise
        except Exception as exc:
            from auditq.formats.engine_log import keep_log

            kept = keep_log(Path(ctx.workdir).resolve() / "gptqmodel.log", ctx.log_dir, f"gptqmodel-{self.name}-{role}")
            raise MeasurementError(f"{self.name}: {what}: {first_line(exc)}"
                                   + (f" (engine log: {kept})" if kept else "")) from exc

    def _record_codes(self, ctx, out: Path) -> None:
        """The saved checkpoint's integer codes, for weight-space evidence; a failure never costs the row."""
        from auditq.formats.code_recorder import CodeRecorder
        from auditq.formats.gptqmodel.gptq_codes import record_gptq_codes

        recorder = CodeRecorder.for_context(ctx, self.name, ctx.role)
        try:
            record_gptq_codes(out, recorder)
        except Exception as exc:  # noqa: BLE001 - supplementary evidence never costs the row
            if recorder is not None:
                recorder.fail(exc)

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
