"""Executors: who runs an AuditPlan's jobs (auditq.audit.plan) and where.

A registry like the probes' and formats' (auditq.registry): listing or checking a name imports nothing, so the
light stage (auditq.validate.executor) refuses `--executor nosuch` without torch. Every executor takes the same
plan, measures the jobs the cache lacks and hands back the same RunRecords; the pipeline (the driver) writes
the cache and the report. `tests/audit/test_executor_contract.py` runs every registered executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auditq.registry import Registry

#: name -> "module:class"; each class is built with the audit's CheckOptions and used as a context manager
EXECUTORS: Registry[Any] = Registry("executor")
EXECUTORS.register("local", "auditq.audit.executors.local:LocalExecutor")
EXECUTORS.register("ray", "auditq.audit.executors.onray:RayExecutor")

#: what `--executor ray` needs installed, and the one-line hint when it is not
INSTALL_HINTS = {"ray": ("ray", "pip install 'auditq[ray]'")}


@dataclass(frozen=True)
class Executed:
    """What an executor hands back: one RunRecord per (role, format) step, in the plan's order, and the
    details each format reported about itself where it was applied (format name -> details; empty when the
    driver applied it, since the driver's own Format object then knows)."""

    runs: list
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
