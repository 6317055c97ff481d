"""Without llama-cpp-python or gguf the gguf rows are UNKNOWN (BackendUnavailable), never a crash.

These tests run with or without the optional packages installed: the import is made to fail.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from auditq.errors import BackendUnavailable
from auditq.formats import make_format
from auditq.formats.base import FormatContext


@pytest.fixture
def fake_checkpoint():
    return SimpleNamespace(path=Path("/nonexistent"), model=None, tokenizer=None, config=None,
                           file_hashes={"config.json": "x"}, eos_token_id=1)


@pytest.mark.parametrize("module", ["llama_cpp", "gguf"])
def test_missing_package_makes_apply_raise_backend_unavailable(module, monkeypatch, tmp_path, fake_checkpoint):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    fmt = make_format("gguf:q4_k_m")  # parsing needs neither package
    with pytest.raises(BackendUnavailable) as err:
        with fmt.apply(fake_checkpoint, FormatContext(workdir=tmp_path)):
            pass
    assert err.value.install_hint == "pip install 'auditq[gguf]'"
    assert "auditq[gguf]" in str(err.value)
    assert fmt.details()["engine"] == "llama.cpp"  # details never needs the engine


def test_llamacpp_lm_without_llama_cpp(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    from auditq.backends.llamacpp_lm import LlamaCppLM

    with pytest.raises(BackendUnavailable, match="llama-cpp-python"):
        LlamaCppLM(tmp_path / "x.gguf")


def test_artifact_without_llama_cpp(monkeypatch, tmp_path, fake_checkpoint):
    from auditq.formats.gguf import GGUFArtifact

    path = tmp_path / "user.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 60)
    art = GGUFArtifact.from_path(path)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(BackendUnavailable, match="auditq\\[gguf\\]"):
        with art.apply(fake_checkpoint, FormatContext(workdir=tmp_path, role="unlearned")):
            pass


def test_importing_the_family_does_not_import_the_engines():
    import subprocess

    code = (
        "import sys\n"
        "import auditq.formats.gguf, auditq.backends.llamacpp_lm\n"
        "from auditq.formats import make_format\n"
        "make_format('gguf:q4_k_m').details()\n"
        "assert 'llama_cpp' not in sys.modules and 'gguf' not in sys.modules, 'engine imported eagerly'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
