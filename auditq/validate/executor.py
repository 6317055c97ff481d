"""--executor and --ray-address, checked in the light stage: torch-free and Ray-free, in well under 2 s.

An executor name that is not registered, `--executor ray` without Ray installed (the install hint), a
--ray-address that is not one of auto | local | ray://host:port | host:port, or a cluster nobody answers at
(a TCP connect with a short timeout) is refused with one line and exit 2, before any weights are read.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from typing import Optional

from auditq.errors import InputError

#: seconds to wait for the cluster's port to answer
CONNECT_TIMEOUT_S = 5.0
#: where `ray start --head` records the address `auto` means when RAY_ADDRESS is not set (Ray 2.x)
RAY_CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")


def check_executor(executor: str, ray_address: Optional[str]) -> None:
    """InputError (exit 2, one line) unless the executor can run here; connects to nothing but a TCP probe."""
    from auditq.audit.executors import EXECUTORS, INSTALL_HINTS

    if executor not in EXECUTORS:
        raise InputError(f"--executor {executor}: unknown executor (known: {', '.join(EXECUTORS.names())})")
    module, hint = INSTALL_HINTS.get(executor, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise InputError(f"--executor {executor} needs {module}, which is not installed: {hint}")
    if executor != "ray":
        if ray_address is not None:
            raise InputError(f"--ray-address {ray_address}: only with --executor ray")
        return
    address = ray_address or "auto"
    if address == "local":
        return
    host_port = _resolve(address)
    _probe(address, host_port)


def _resolve(address: str) -> tuple[str, int]:
    """host and port of --ray-address (auto: RAY_ADDRESS, else the cluster `ray start` recorded here)."""
    if address == "auto":
        found = os.environ.get("RAY_ADDRESS", "").strip()
        if not found:
            try:
                found = RAY_CURRENT_CLUSTER.read_text(encoding="utf-8").strip()
            except OSError:
                found = ""
        if not found:
            raise InputError("--ray-address auto: no running Ray cluster found (RAY_ADDRESS unset and no "
                             "`ray start` on this machine); start one, give its address, or use --ray-address local")
        if found == "auto":
            raise InputError("--ray-address auto: RAY_ADDRESS is 'auto' too; give the cluster's host:port")
        return _resolve(found)
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--ray-address {address}: expected auto, local, ray://HOST:PORT or HOST:PORT")
    return host.strip("[]"), int(port)


def _probe(address: str, host_port: tuple[str, int]) -> None:
    try:
        with socket.create_connection(host_port, timeout=CONNECT_TIMEOUT_S):
            return
    except OSError as exc:
        why = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
        raise InputError(f"--ray-address {address}: cannot reach the Ray cluster at {host_port[0]}:{host_port[1]} "
                         f"({why})") from None
