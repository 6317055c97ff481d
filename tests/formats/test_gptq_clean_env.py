"""The installed `auditq` runs gptq4 in a subprocess with a clean environment (no GPTQMODEL_* variables,
no HF_HOME): the product itself arranges GPTQModel's worker pools, which on a 1-2 core machine would
otherwise refuse to start ("Virtual pool 'model_loader:cpu' requests 2 workers but parent 'cpu' only
has 1"), and keeps GPTQModel's side effects (./logs, HF_HOME, ~/.cache/gptqmodel) out of the user's dirs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("gptqmodel") is None:
    pytest.skip("needs gptqmodel (pip install 'auditq[gptq]')", allow_module_level=True)

from gguf_helpers import build_llama_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_files import write_suite  # noqa: E402

pytestmark = pytest.mark.slow

TEXTS = [f"The quick brown fox number {i} jumps over the lazy dog in Warsaw and then runs home again." for i in range(8)]


def _clean_env(home: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "PIP_CONSTRAINT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(HOME=str(home), AUDITQ_CACHE_DIR=str(home / "auditq-cache"))
    assert not any(k.startswith("GPTQMODEL_") or k == "HF_HOME" for k in env)
    return env


def test_installed_cli_runs_gptq4_with_a_clean_environment(tmp_path):
    base = build_llama_checkpoint(tmp_path / "base", hidden=64, intermediate=128, seed=0)
    unlearned = build_llama_checkpoint(tmp_path / "unlearned", hidden=64, intermediate=128, seed=1)
    records = [{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)]
    suite = write_suite(tmp_path / "suite", forget=records[:4], retain=records[4:], holdout=records[4:],
                        toml="[probes]\nprefix_tokens = 4\nmax_new_tokens = 6\nanswer_tokens = 4\n")
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    auditq = Path(sys.executable).with_name("auditq")
    done = subprocess.run([str(auditq), "check", str(base), str(unlearned), "--suite", str(suite), "-f", "gptq4",
                           "--probes", "verbmem,utility", "--no-cache", "--quiet", "--threads", "1",
                           "--out", str(tmp_path / "out")],
                          cwd=cwd, env=_clean_env(home), capture_output=True, text=True, timeout=1200)
    # random models memorise nothing, so the checks themselves may be UNKNOWN (exit 3); the row must not be
    assert done.returncode in (0, 1, 3) and "Traceback" not in done.stderr, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    row = next(f for f in report["formats"] if f["format"] == "gptq4")
    assert row["error"] is None, row["error"]
    assert row["details"]["engine"] == "gptqmodel" and row["roles"]["unlearned"]["retain_nll"] is not None
    assert not (cwd / "logs").exists()  # GPTQModel writes ./logs: contained in the scratch dir
    assert not (home / ".cache" / "gptqmodel").exists()


def test_a_failing_engine_leaves_its_log_where_the_error_says(tmp_path, monkeypatch):
    """The scratch dir (and the log in it) is deleted when the audit ends; the error names a kept copy."""
    import shutil

    import gptqmodel

    from auditq.checkpoint.load import load_checkpoint
    from auditq.errors import MeasurementError
    from auditq.formats import make_format
    from auditq.formats.base import FormatContext

    checkpoint = load_checkpoint(build_llama_checkpoint(tmp_path / "base", hidden=64, intermediate=128), "base")

    def refuse(*args, **kwargs):
        print("GPTQModel: something it printed before failing")
        raise RuntimeError("engine refused")

    monkeypatch.setattr(gptqmodel.GPTQModel, "load", refuse)  # an engine failure, after real engine setup
    scratch = tmp_path / "scratch"
    ctx = FormatContext(workdir=scratch, calibration_texts=tuple(TEXTS), role="base",
                        log_dir=tmp_path / "kept")
    with pytest.raises(MeasurementError) as info:
        with make_format("gptq4").apply(checkpoint, ctx):
            pass
    shutil.rmtree(scratch)
    message = str(info.value)
    assert "engine refused" in message and "engine log: " in message
    kept = Path(message.split("engine log: ")[1].rstrip(")"))
    assert kept.is_file() and kept.parent == (tmp_path / "kept").resolve()
    assert "something it printed before failing" in kept.read_text()
