"""What an audit must measure: jobs (checkpoint role × format × probe), and which the cache already holds.

Planning reads no weights and runs no model: it lists every job and asks the result cache
(auditq.cache.store) which outputs exist. The executor (auditq.audit.executor) decides how and where the
remaining jobs run; a distributed executor could take the same plan. The cache is the store
between the two: the executor writes every measured output into it, and a second plan of the
same audit finds everything there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from auditq.formats import Format
from auditq.probes import Probe, ProbeOutput

#: the order checkpoints are measured in (one resident at a time)
ROLE_ORDER = ("base", "unlearned", "retrain", "reference")


@dataclass(frozen=True)
class Job:
    """One probe of one checkpoint in one format."""

    role: str
    format: str
    probe: str


@dataclass(frozen=True)
class Step:
    """One checkpoint in one format: the probes still to measure and the outputs the cache had."""

    role: str
    format: Format
    to_measure: tuple[Probe, ...]
    cached: Mapping[str, ProbeOutput]
    #: the same checkpoint as an earlier role (identical files): ask the cache again when the step runs,
    #: since the earlier role's outputs are stored there by then
    deferred: bool = False

    @property
    def needs_model(self) -> bool:
        return bool(self.to_measure)

    def jobs(self) -> tuple[Job, ...]:
        return tuple(Job(self.role, self.format.name, p.name) for p in self.to_measure)


@dataclass(frozen=True)
class AuditPlan:
    """Every (role, format) step, grouped role by role in ROLE_ORDER, formats in the requested order."""

    steps: tuple[Step, ...]

    def roles(self) -> tuple[str, ...]:
        seen: list[str] = []
        for step in self.steps:
            if step.role not in seen:
                seen.append(step.role)
        return tuple(seen)

    def steps_for(self, role: str) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.role == role)

    def roles_to_load(self) -> tuple[str, ...]:
        """Roles whose weights must be read (some probe of theirs is not cached)."""
        return tuple(r for r in self.roles() if any(s.needs_model for s in self.steps_for(r)))

    def pending(self) -> tuple[Job, ...]:
        return tuple(job for step in self.steps for job in step.jobs())


#: cache lookup: (format, role, probes) -> outputs found (the executor's cache session provides it)
Lookup = Callable[[Format, str, Sequence[Probe]], Mapping[str, ProbeOutput]]


def plan_audit(formats: Sequence[Format], roles: Sequence[str], probes: Sequence[Probe],
               lookup: Lookup | None = None, identity: Callable[[str], str] | None = None) -> AuditPlan:
    """Every role in every format (the reference role only in the first, the reference format).

    `identity(role)`: what the cache keys a checkpoint by; a role identical to an earlier one is
    deferred (its outputs will be in the cache once the earlier role ran).
    """
    steps: list[Step] = []
    seen: set[str] = set()
    for role in sorted(roles, key=ROLE_ORDER.index):
        role_formats = formats[:1] if role == "reference" else formats
        key = identity(role) if identity is not None and lookup is not None else None
        deferred = key is not None and key in seen
        if key is not None:
            seen.add(key)
        for fmt in role_formats:
            if deferred:
                steps.append(Step(role=role, format=fmt, to_measure=tuple(probes), cached={}, deferred=True))
                continue
            cached = dict(lookup(fmt, role, probes)) if lookup is not None else {}
            steps.append(Step(role=role, format=fmt, to_measure=tuple(p for p in probes if p.name not in cached),
                              cached=cached))
    return AuditPlan(tuple(steps))
