"""--executor and --ray-address in the light stage (auditq.validate.executor): one line, exit 2, before torch."""

from __future__ import annotations

import socket
import sys

import pytest

from auditq.errors import InputError
from auditq.validate.executor import check_executor


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nobody listens there


def test_unknown_executor_and_misplaced_address_are_refused():
    with pytest.raises(InputError, match="--executor dask: unknown executor \\(known: local, ray\\)"):
        check_executor("dask", None)
    with pytest.raises(InputError, match="only with --executor ray"):
        check_executor("local", "auto")
    check_executor("local", None)


def test_ray_missing_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what importlib sees when ray is not installed
    with pytest.raises(InputError, match=r"--executor ray needs ray, which is not installed: pip install 'auditq\[ray\]'"):
        check_executor("ray", "local")


@pytest.mark.parametrize("address", ["nonsense", "ray://host", "host:99999", "http://x:1"])
def test_malformed_addresses(address):
    pytest.importorskip("ray")
    with pytest.raises(InputError, match="expected auto, local, ray://HOST:PORT or HOST:PORT"):
        check_executor("ray", address)


def test_unreachable_cluster_is_refused_quickly(monkeypatch, tmp_path):
    pytest.importorskip("ray")
    port = _closed_port()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(InputError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
            check_executor("ray", address)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("auditq.validate.executor.RAY_CURRENT_CLUSTER", tmp_path / "none")
    with pytest.raises(InputError, match="auto: no running Ray cluster found"):
        check_executor("ray", "auto")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(InputError, match="cannot reach"):
        check_executor("ray", None)  # default auto: RAY_ADDRESS


def test_installed_cli_refuses_an_unreachable_cluster_in_one_line(tmp_path):
    """The console script, clean environment: exit 2, one line, torch never imported (no time spent)."""
    import subprocess
    import time
    from pathlib import Path

    pytest.importorskip("ray")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "AUDITQ_CACHE_DIR": str(tmp_path / "cache"), "LANG": "C.UTF-8"}
    start = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "auditq"), "check", str(tmp_path / "b"),
                           str(tmp_path / "u"), "--executor", "ray", "--ray-address", f"127.0.0.1:{_closed_port()}"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert time.monotonic() - start < 60
