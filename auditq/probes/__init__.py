"""Probe registry. Each probe is a module behind the Probe interface in auditq.probes.base."""

from __future__ import annotations

from auditq.probes.base import Probe, ProbeOutput, ProbeSettings, Sample
from auditq.registry import Registry

PROBES: Registry[type[Probe]] = Registry("probe")
PROBES.register("verbmem", "auditq.probes.verbmem:VerbMem")
PROBES.register("knowmem", "auditq.probes.knowmem:KnowMem")
PROBES.register("mia", "auditq.probes.mia:MembershipInference")
PROBES.register("utility", "auditq.probes.utility:RetainLikelihood")
PROBES.register("mcq", "auditq.probes.mcq:MultipleChoice")
PROBES.register("tofu", "auditq.probes.tofu:TofuMetrics")

DEFAULT_PROBES = ("verbmem", "knowmem", "mia", "utility")

__all__ = ["DEFAULT_PROBES", "PROBES", "Probe", "ProbeOutput", "ProbeSettings", "Sample"]
