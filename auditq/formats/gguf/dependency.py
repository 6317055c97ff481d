"""The `gguf` Python package, imported on demand, and the error every refusal of the converter raises.

A leaf of the gguf subpackage: the converter's modules (hparams, tensors, vocab, metadata, convert) import it;
it imports nothing of theirs.
"""

from __future__ import annotations

from auditq.errors import BackendUnavailable

INSTALL_HINT = "pip install 'auditq[gguf]'"


class UnsupportedModel(BackendUnavailable):
    """auditq cannot convert this checkpoint to GGUF (architecture, tokenizer or option)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def require_gguf():
    """Import the gguf package or raise BackendUnavailable with the install hint."""
    try:
        import gguf
    except ImportError:
        raise BackendUnavailable("the gguf formats need the 'gguf' package", install_hint=INSTALL_HINT) from None
    return gguf


def gguf_version() -> str:
    try:
        from importlib.metadata import version

        return version("gguf")
    except Exception:  # noqa: BLE001 - metadata is informational only
        return "unknown"
