"""GGUF formats measured the way they are deployed: converted, quantized and run by llama.cpp.

Format strings (family ``gguf``): ``gguf:f32``, ``gguf:f16``, ``gguf:bf16``, ``gguf:q8_0``,
``gguf:q6_k``, ``gguf:q5_k_m``, ``gguf:q5_k_s``, ``gguf:q5_1``, ``gguf:q5_0``, ``gguf:q4_k_m``,
``gguf:q4_k_s``, ``gguf:q4_1``, ``gguf:q4_0``, ``gguf:q3_k_m``, ``gguf:q2_k``.

Pipeline of one ``GGUFFormat.apply(checkpoint, ctx)``:

1. The in-memory checkpoint is written once per checkpoint and workdir as an all-F32 GGUF
   (``ctx.workdir/gguf/<checkpoint key>/model-f32.gguf``, see convert.py; Llama/Mistral,
   Qwen2 and GPT-2 with byte-level BPE vocabularies; what it refuses -- SentencePiece
   vocabularies, qwen3, phi, phi3, gemma2, olmo2, gpt_neox -- goes through llama.cpp's own
   convert_hf_to_gguf.py in a subprocess, hf_convert.py). Every gguf:* format of the run
   quantizes from that same file. Unsupported models raise ``UnsupportedModel`` (a
   ``BackendUnavailable``): the row is UNKNOWN with the reason.
2. llama.cpp's own quantizer (``llama_model_quantize``, default parameters, no imatrix)
   writes ``model-<type>.gguf``; the tensor types it actually produced are read back with
   ``gguf.GGUFReader`` and reported by ``details()``, with a note when weights did not get
   the requested type (K-quants fall back when an input dimension is not a multiple of 256).
3. The file is loaded in llama.cpp (F32 KV cache) as a ``LlamaCppLM``; llama.cpp's tokenizer
   is checked against the checkpoint's HF tokenizer on ``ctx.parity_texts``
   (MeasurementError naming the first text that differs); the LM is yielded. On exit it is
   closed and the quantized file deleted (``ctx.keep_gguf = True`` keeps it). The
   checkpoint's model is only read.

``FormatContext`` fields read here: ``parity_texts`` (texts for the tokenizer check), ``role``
(names the run in ``details()``; required by GGUFArtifact), ``threads`` (llama.cpp threads;
default ``torch.get_num_threads()``), ``gguf_n_ctx`` (initial context, default 512; it grows
on demand up to the model's training context), ``keep_gguf`` (keep quantized files).

Missing ``llama-cpp-python`` or ``gguf`` raises ``BackendUnavailable`` (install hint
``pip install 'auditq[gguf]'``) from ``apply()``; ``parse()`` never needs them.

User-supplied GGUF files (``--artifact``)
-----------------------------------------
A GGUF file produced outside auditq (e.g. by llama.cpp's convert_hf_to_gguf.py and
llama-quantize, or downloaded) is audited as one more row::

    from auditq.formats.gguf import GGUFArtifact

    fmt = GGUFArtifact.from_path(Path("unlearned-Q4_K_M.gguf"),
                                 role_paths={"base": Path("base-Q4_K_M.gguf")})  # base optional
    fmt.name            # "gguf-file:unlearned-Q4_K_M.gguf" (or name=...)
    fmt.roles           # ("unlearned", "base")
    fmt.path_for("base")  # Path or None

    with fmt.apply(checkpoint, FormatContext(workdir, role="unlearned",
                                                      parity_texts=texts)) as lm:
        ...

``path`` is the file for role ``role`` (default ``"unlearned"``); ``role_paths`` maps
further roles (``"base"``, ``"retrain"``: the pipeline's role names) to their files.

- ``apply()`` REQUIRES ``ctx.role``, the role of the checkpoint being applied
  (the pipeline passes one shared ctx, so set it per job, e.g.
  ``dataclasses.replace(ctx, role=role)``); without it apply raises
  MeasurementError rather than guess which file belongs to which checkpoint.
- A role without a file raises ``ArtifactMissing`` (a ``BackendUnavailable``: UNKNOWN for
  that cell, e.g. the base model when only the unlearned file was given). Pipelines that
  prefer to skip such cells can test ``fmt.path_for(role) is None`` first.
- ``from_path`` raises ``InputError`` (exit 2) for a path that does not exist or is not a
  GGUF file. ``fmt.validate({"base": ckpt, "unlearned": ckpt2})`` checks before any scoring
  that each file's vocabulary size, width and depth match its role's checkpoint (InputError);
  ``apply()`` repeats that check, and raises ``MeasurementError`` when llama.cpp's tokenizer
  disagrees with the checkpoint's on ``ctx.parity_texts``.
- The HF checkpoint is still needed: probes tokenize with its tokenizer and the ids are
  scored by llama.cpp.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

from auditq.checkpoint.load import sha256_file
from auditq.errors import BackendUnavailable, InputError, MeasurementError
from auditq.formats.base import ArtifactFormat, Format, FormatContext, FormatSpec
from auditq.formats.gguf.convert import INSTALL_HINT, UnsupportedModel, cached_f32_conversion, require_gguf
from auditq.formats.gguf.quantize import QUANT_TYPES, describe_gguf, quantize_gguf, read_metadata, require_llama_cpp
from auditq.formats.options import GGUFOptions
from auditq.formats.resident import free_resident, structure
from auditq.regular_file import open_regular

__all__ = ["ArtifactMissing", "GGUFArtifact", "GGUFFormat", "UnsupportedModel", "QUANT_TYPES", "INSTALL_HINT"]


class ArtifactMissing(BackendUnavailable):
    """No GGUF artifact was given for this role (e.g. only the unlearned model's file)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _threads(ctx: FormatContext) -> int:
    threads = ctx.threads
    if threads:
        return int(threads)
    import torch

    return max(1, torch.get_num_threads())


def _role(checkpoint, ctx: FormatContext, default: str = "") -> str:
    return str(ctx.role or default or Path(str(checkpoint.path)).name)


def _engine_versions() -> dict[str, str]:
    from auditq.formats.gguf.convert import gguf_version

    versions = {"gguf_version": gguf_version()}
    try:
        from importlib.metadata import version

        versions["engine_version"] = version("llama-cpp-python")
    except Exception:  # noqa: BLE001 - informational
        pass
    return versions


def gguf_offload(ctx: FormatContext) -> tuple[int, str]:
    """(n_gpu_layers, device note) for llama.cpp: all layers on the GPU on a CUDA audit with a GPU build."""
    from auditq.backends.llamacpp_lm import _import_llama_cpp
    from auditq.formats.engine_devices import llama_cpp_offload, llama_cpp_supports_gpu

    device = str(ctx.device or "cpu")
    return llama_cpp_offload(device, device.startswith("cuda") and llama_cpp_supports_gpu(_import_llama_cpp()))


def _open_lm(path: Path, checkpoint, ctx: FormatContext, description: str):
    from auditq.backends.llamacpp_lm import LlamaCppLM, check_tokenizer_parity

    layers, _ = gguf_offload(ctx)
    lm = LlamaCppLM(path, eos_token_id=checkpoint.eos_token_id, n_ctx=int(ctx.gguf_n_ctx),
                    seed=ctx.seed, n_threads=_threads(ctx), description=description, n_gpu_layers=layers)
    try:
        n = check_tokenizer_parity(lm, checkpoint.tokenizer, tuple(ctx.parity_texts or ()))
    except BaseException:
        lm.close()
        raise
    return lm, n


def _record_codes(path: Path, checkpoint, ctx: FormatContext, fmt_name: str, role: str) -> None:
    """Weight-space evidence: the file's codes in HF layout (auditq.formats.gguf.codes); never costs the row."""
    from auditq.formats.code_recorder import CodeRecorder
    from auditq.formats.gguf.codes import hf_layout, record_gguf_codes

    recorder = CodeRecorder.for_context(ctx, fmt_name, ctx.role)
    if recorder is None:
        return
    try:
        record_gguf_codes(path, hf_layout(checkpoint), recorder)
    except Exception as exc:  # noqa: BLE001 - supplementary evidence
        recorder.fail(exc)


def _merge_runs(base: dict[str, Any], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    info = dict(base)
    if not runs:
        return info
    last = list(runs.values())[-1]
    info.update(last)
    if len(runs) > 1 and len({repr(r.get("tensor_types")) for r in runs.values()}) > 1:
        info["by_role"] = {role: r.get("tensor_types") for role, r in runs.items()}
    return info


class GGUFFormat(Format):
    """``gguf:<type>``: HF → F32 GGUF → llama.cpp quantizer → scored by llama.cpp."""

    engine = "llama.cpp"
    needs_resident = False  # llama.cpp holds its own copy: the resident torch model is freed first

    def __init__(self, spec: FormatSpec, options: GGUFOptions) -> None:
        super().__init__(spec, options)
        self.quant = quant = options.quant
        self._runs: dict[str, dict[str, Any]] = {}
        self.has_codes = quant not in ("f32", "f16", "bf16")  # weight-space evidence (auditq.audit.evidence)

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        require_gguf()
        require_llama_cpp()
        role = _role(checkpoint, ctx)
        conversion = cached_f32_conversion(checkpoint, ctx.workdir)
        path = conversion.path
        if self.quant != "f32":
            path = conversion.path.with_name(f"model-{self.quant}.gguf")
            if not path.is_file():
                quantize_gguf(conversion.path, path, self.quant, nthread=_threads(ctx))
        lm = None
        try:
            run: dict[str, Any] = {
                "requested": self.quant.upper(),
                "converter": f"{conversion.converter}, then llama.cpp's quantizer with default parameters",
                **describe_gguf(path, self.quant),
            }
            notes = [run.get("note"), *conversion.notes]
            if conversion.arch in ("gpt2", "phi2", "gptneox", "gemma2"):
                notes.append("llama.cpp evaluates GELU through an fp16 lookup table, so even gguf:f32 differs "
                             "from torch by up to ~5e-3 in per-token log-prob")
            if any(notes):
                run["note"] = "; ".join(n for n in notes if n)
            if self.has_codes:  # an artifact row standing in for a role records under the artifact's name
                _record_codes(path, checkpoint, ctx, ctx.codes_as or self.name, role)
            free_resident(checkpoint)  # one model at a time: llama.cpp's replaces the torch copy
            lm, n_checked = _open_lm(path, checkpoint, ctx, f"llama.cpp {self.quant.upper()} ({self.name})")
            run["tokenizer_parity_texts"] = n_checked
            run["device"] = gguf_offload(ctx)[1]
            self._runs[role] = run
            yield lm
        finally:
            if lm is not None:
                lm.close()
            if path != conversion.path and not ctx.keep_gguf:
                path.unlink(missing_ok=True)

    def details(self) -> dict[str, Any]:
        return _merge_runs({"engine": self.engine, **_engine_versions(), "requested": self.quant.upper()}, self._runs)


def _is_gguf(path: Path) -> bool:
    try:
        with open_regular(path) as handle:  # a FIFO --artifact: refused, never a block
            return handle.read(4) == b"GGUF"
    except (OSError, InputError):
        return False


class GGUFArtifact(ArtifactFormat):
    """A GGUF file produced outside auditq, scored by llama.cpp as one more row (see module docstring)."""

    engine = "llama.cpp"
    has_codes = True  # weight-space evidence of the given files (auditq.audit.evidence)
    needs_resident = False

    @classmethod
    def from_path(cls, path: Path | str, role_paths: Mapping[str, Path | str] | None = None, *,
                  role: str = "unlearned", name: str | None = None) -> "GGUFArtifact":
        """Artifact row for `path` (the `role` model's file) plus optional files for other roles."""
        paths: dict[str, Path] = {role: Path(path)}
        for other, other_path in (role_paths or {}).items():
            if other in paths and Path(other_path) != paths[other]:
                raise InputError(f"two GGUF artifacts given for the {other} model")
            paths[other] = Path(other_path)
        for r, p in paths.items():
            if not p.is_file():
                raise InputError(f"GGUF artifact for the {r} model {p} does not exist or is not a file")
            if not _is_gguf(p):
                raise InputError(f"{p} is not a GGUF file (no GGUF magic bytes)")
        raw = name or f"gguf-file:{Path(path).name}"
        return cls(FormatSpec(raw=raw, family="gguf", head="gguf-file", args=(str(Path(path)),)), paths, role)

    @classmethod
    def parse(cls, spec: FormatSpec) -> "GGUFArtifact":
        raise InputError(f"format {spec.raw!r}: GGUF files are audited with --artifact PATH, not as a format name")

    def validate(self, checkpoints: Mapping[str, Any]) -> None:
        """Check up front (before any scoring) that every artifact fits its role's checkpoint.

        Raises InputError for a role without a checkpoint or a file whose vocabulary, width or
        depth differs from that checkpoint. Reads GGUF metadata only; skipped without `gguf`.
        """
        for role, path in self.role_paths.items():
            if role not in checkpoints:
                raise InputError(f"GGUF artifact {path} is given for the {role} model, but there is no {role} checkpoint")
        try:
            require_gguf()
        except BackendUnavailable:
            return
        for role, path in self.role_paths.items():
            self._check_matches(path, self._describe(path), checkpoints[role])

    @contextmanager
    def apply(self, checkpoint, ctx: FormatContext):
        role = ctx.role
        if not role:
            raise MeasurementError("a GGUF artifact needs ctx.role (base, unlearned, ...) to pick its file")
        path = self.role_paths.get(role)
        require_gguf()
        require_llama_cpp()
        if path is None:
            # no file for this role (typically the base): measure its checkpoint in the same llama.cpp
            # type as the given file, so retention is still read at the same precision
            quant = self._given_quant()
            if quant is None:
                raise ArtifactMissing(f"no GGUF artifact was given for the {role} model and the given file's type "
                                      f"is not one auditq can reproduce (given: {', '.join(self.roles)})")
            from auditq.formats import make_format

            stand_in = make_format(f"gguf:{quant}")
            from dataclasses import replace

            with stand_in.apply(checkpoint, replace(ctx, codes_as=self.name)) as lm:
                self._runs[role] = {"stand_in": f"no file given for the {role} model: its checkpoint was quantized "
                                                f"to {quant.upper()} by llama.cpp", **stand_in.details()}
                yield lm
            return
        run = self._describe(path)
        self._check_matches(path, run, checkpoint)
        _record_codes(path, checkpoint, ctx, self.name, role)
        free_resident(checkpoint)
        lm, n_checked = _open_lm(path, checkpoint, ctx, f"llama.cpp {run.get('file_type', '?')} ({path.name})")
        run["tokenizer_parity_texts"] = n_checked
        run["device"] = gguf_offload(ctx)[1]
        self._runs[role] = run
        try:
            yield lm
        finally:
            lm.close()

    def _given_quant(self) -> str | None:
        """The llama.cpp type of the default role's file, if auditq can produce the same type."""
        file_type = self._describe(self.role_paths[self.default_role]).get("file_type")
        return file_type.lower() if isinstance(file_type, str) and file_type.lower() in QUANT_TYPES else None

    def _describe(self, path: Path) -> dict[str, Any]:
        import gguf

        meta = read_metadata(path, ("general.architecture", "general.name", "general.file_type"))
        arch = meta.get("general.architecture", "")
        dims = read_metadata(path, (f"{arch}.embedding_length", f"{arch}.block_count", f"{arch}.vocab_size",
                                    "tokenizer.ggml.tokens"))
        file_type = meta.get("general.file_type")
        quant = None
        if file_type is not None:
            try:
                file_type = gguf.LlamaFileType(int(file_type)).name.replace("MOSTLY_", "")
                quant = file_type.lower() if file_type.lower() in QUANT_TYPES else None
            except ValueError:
                file_type = str(file_type)
        info = describe_gguf(path, quant)
        tokens = dims.get("tokenizer.ggml.tokens")
        return {
            "source": str(path), "sha256": sha256_file(path), "architecture": arch,
            "model_name": meta.get("general.name"), "file_type": file_type, **info,
            "_dims": {"hidden_size": dims.get(f"{arch}.embedding_length"),
                      "num_hidden_layers": dims.get(f"{arch}.block_count"),
                      "vocab": len(tokens) if tokens is not None else dims.get(f"{arch}.vocab_size")},
        }

    @staticmethod
    def _check_matches(path: Path, run: dict[str, Any], checkpoint) -> None:
        dims = run.pop("_dims", {})
        config = checkpoint.config
        expected = {
            "hidden_size": getattr(config, "hidden_size", None) or getattr(config, "n_embd", None),
            "num_hidden_layers": getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None),
            "vocab": int(structure(checkpoint).get_input_embeddings().weight.shape[0]),
        }
        for key, want in expected.items():
            got = dims.get(key)
            if got is not None and want is not None and int(got) != int(want):
                raise InputError(f"GGUF artifact {path.name} does not match the {checkpoint.path} checkpoint: "
                                 f"{key} {got} vs {want}")

    def details(self) -> dict[str, Any]:
        base = {"engine": self.engine, **_engine_versions(),
                "artifacts": {r: str(p) for r, p in self.role_paths.items()}}
        return _merge_runs(base, self._runs)
