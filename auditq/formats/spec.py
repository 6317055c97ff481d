"""A format string as parsed (FormatSpec) and the stacking families: the leaf every format module builds on.

Kept apart from auditq.formats.base (the Format classes) and auditq.formats.options (each family's option
parser) so that neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FormatSpec:
    """A parsed format string such as "rtn4:g128" or "gguf:q4_k_m".

    `family` selects the registered Format class; `args` are the colon-separated
    options after the family's own head (e.g. ("g128",)).
    """

    raw: str
    family: str
    head: str
    args: tuple[str, ...] = ()


#: in-memory torch transformations: only these may follow a "+" (auditq.formats.compose)
STACKABLE = ("fp8", "prune", "relearn")
#: families whose model has no full-precision nn.Linear weights left
QUANTIZED = ("bnb", "gptq", "awq", "gguf")
