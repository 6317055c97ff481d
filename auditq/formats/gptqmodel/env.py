"""GPTQModel's environment, worker pools and package checks: one place that contains its process-wide side effects.

- ``engine_env``: contains GPTQModel's process-wide side effects. Importing it sets HF_HOME
  (creating /tmp/tokenicer_hf_home when unset), PYTORCH_ALLOC_CONF, CUDA_DEVICE_ORDER ... in
  ``os.environ``, quantizing writes ``./logs``,
  packing JIT-compiles a C++ extension into ``~/.cache/gptqmodel`` and its logger draws
  progress bars on stdout. Inside the context the cwd is a scratch dir, packing uses the
  pure-torch path (``GPTQMODEL_DISABLE_PACK_EXT=1`` unless the user set it: byte-identical
  output, no compiler needed), stdout/stderr go to a log file, and on exit the environment,
  cwd, torch thread count and default dtype are put back exactly.
- ``require_gptqmodel``: the engine imported (inside ``engine_env``) or BackendUnavailable
  with the install hint; ``drop_engine_tracebacks`` / ``release_memory`` free what it keeps.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from auditq.errors import BackendUnavailable

GPTQ_INSTALL_HINT = "pip install 'auditq[gptq]'"
BNB_INSTALL_HINT = "pip install 'auditq[bnb]'"


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
    """CUDA when available (or ctx.device), else CPU."""
    requested = ctx.device
    if requested:
        return str(requested)
    return "cuda" if torch.cuda.is_available() else "cpu"


def role_of(checkpoint, ctx) -> str:
    return str(ctx.role or Path(str(checkpoint.path)).name or "model")


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


def release_memory() -> None:
    """Collect a dropped model promptly (CUDA cache too)."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
