"""The one table of ranges for every numeric CLI option, suite.toml setting and remediate hyper-parameter.

Why one table: a number outside what the code below can take used to be accepted and fail late, or never
return (`--threads 10000` spawned threads until the run hung; `--seed -1` and `--seed 2**70` failed inside
numpy/torch after the models loaded; `privleak_target = inf` trained for a minute before exiting 1). The
light validation stage (auditq.validate.inputs, auditq.remediate.validate, the suite's settings check) checks
every value against `LIMITS` before anything heavy runs; docs/options.md lists the same table
(`tests/validate/test_numeric_limits.py` holds the two equal). NaN and infinity are refused for every float.
Torch-free, auditq-free apart from the error type: a leaf of the root stage.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Optional

from auditq.errors import InputError

#: most threads ever asked of torch's pool: 4 per core (more only contend), and never above 1024
MAX_THREADS = min(1024, 4 * (os.cpu_count() or 1))
#: numpy's and torch's seeds are unsigned 32-bit (numpy.random.seed refuses anything else)
MAX_SEED = 2**32 - 1
#: no model auditq can run has a context of a million tokens; the model's own context binds first
MAX_TOKENS = 1_000_000


@dataclass(frozen=True)
class Range:
    """Closed range [low, high] (low excluded when `low_open`) of one setting; `kind` is int or float."""

    low: float
    high: float
    kind: type
    low_open: bool = False
    high_open: bool = False
    #: how the high end reads in the docs when it depends on the machine
    high_text: str = ""
    why: str = ""

    def describe(self) -> str:
        """The range as a reader sees it, e.g. "an integer in 1..8" or "a finite number in (0, 1]"."""
        high = self.high_text or _fmt(self.high)
        if self.kind is int:
            return f"an integer in {_fmt(self.low)}..{high}"
        return f"a finite number in {'(' if self.low_open else '['}{_fmt(self.low)}, {high}{')' if self.high_open else ']'}"


def _fmt(number: float) -> str:
    if number == MAX_SEED:
        return "2**32-1"
    if isinstance(number, float) and not number.is_integer():
        return f"{number:g}"
    return f"{int(number):,}".replace(",", "_") if abs(number) >= 10_000 else str(int(number))


#: setting name (the option's name without dashes, underscores for hyphens) -> its range
LIMITS: dict[str, Range] = {
    "threads": Range(1, MAX_THREADS, int, high_text=f"min(1024, 4 × CPU cores) (= {MAX_THREADS} here)",
                     why="torch's CPU pool; thousands of threads never return"),
    "seed": Range(0, MAX_SEED, int, why="numpy and torch seeds are unsigned 32-bit"),
    "batch_size": Range(1, 65_536, int, why="sequences per forward pass / training step"),
    "max_batch_tokens": Range(1, 2**24, int, why="tokens per forward pass"),
    "verify_cache": Range(0, 1_000_000, int, why="cached rows re-measured"),
    "prefix_tokens": Range(1, MAX_TOKENS, int, why="and prefix + max_new_tokens within the model's context"),
    "max_new_tokens": Range(1, MAX_TOKENS, int, why="and prefix + max_new_tokens within the model's context"),
    "answer_tokens": Range(1, MAX_TOKENS, int, why="and below the model's context"),
    "seeds": Range(1, 1000, int, why="seeds per stochastic format (--seeds N repeats each such row N times)"),
    "privleak_reference_auc": Range(0.0, 1.0, float, low_open=True, high_open=True,
                                    why="PrivLeak's reference AUC without --retrain (MUSE: News 0.4772, Books 0.5393)"),
    "served_timeout": Range(0.0, 86_400.0, float, low_open=True, why="seconds per HTTP request to --served"),
    "concurrency": Range(1, 1024, int, why="HTTP requests in flight to --served"),
    "ray_timeout": Range(1.0, 30 * 86_400.0, float, why="seconds before outstanding Ray tasks are cancelled"),
    "mink_k": Range(0.0, 1.0, float, low_open=True, why="Min-K%'s fraction of tokens"),
    # auditq remediate's hyper-parameters
    "lr": Range(0.0, 1.0, float, low_open=True, why="AdamW learning rate"),
    "steps": Range(1, 1_000_000, int, why="training step budget"),
    "percentile": Range(0.0, 100.0, float, why="SURE's saliency percentile"),
    "check_every": Range(1, 1_000_000, int, why="steps between retention measurements"),
    "target": Range(0.0, 1000.0, float, why="retention upper bound (a ratio to BASE's score)"),
    "privleak_target": Range(-100.0, 1000.0, float,
                             why="PrivLeak % (MUSE's sign); -100 is its floor, 1000 far above any reachable value"),
    "retain_weight": Range(0.0, 1_000_000.0, float, why="weight of the retain loss"),
    # numbers inside a --formats spec (auditq.formats.options)
    "group_size": Range(1, 2**20, int, why="rtnN:gG: weights per quantization group"),
    "prune_m": Range(2, 1024, int, why="prune:N:M: block size M"),
    "relearn_steps": Range(1, 1_000_000, int, why="relearn:...:steps=N"),
    "relearn_lora": Range(1, 4096, int, why="relearn:...:lora=R (LoRA rank)"),
    "relearn_batch": Range(1, 65_536, int, why="relearn:...:batch=B"),
}


def check_number(name: str, value: Any, where: Optional[str] = None) -> Any:
    """`value` when it lies in LIMITS[name] (None passes: "not given"); InputError (exit 2, one line) naming
    `where` (default: the flag --name), the value and the range otherwise. bool is never a number."""
    if value is None:
        return None
    limit = LIMITS[name]
    where = where or f"--{name.replace('_', '-')}"
    ok = not isinstance(value, bool) and isinstance(value, (int, float) if limit.kind is float else int)
    if ok and isinstance(value, float):
        ok = math.isfinite(value)
    if ok:
        ok = (limit.low < value if limit.low_open else limit.low <= value) and \
            (value < limit.high if limit.high_open else value <= limit.high)
    if not ok:
        raise InputError(f"{where} = {_show(value)}: expected {limit.describe()}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}…({len(text)} digits)"


def check_numbers(values: dict[str, Any], where: Optional[dict[str, str]] = None) -> None:
    """check_number for each (name, value); `where` names a setting's source other than its flag."""
    for name, value in values.items():
        check_number(name, value, (where or {}).get(name))


def check_context(prefix: int, max_new: int, answer: int, context: Optional[int], source: str,
                  flags: tuple[str, str, str] = ("--prefix-tokens", "--max-new-tokens", "--answer-tokens")) -> None:
    """VerbMem's prompt plus continuation, and KnowMem's answer, must fit the model's context (config.json's
    max_position_embeddings / n_positions), checked before any weights load: a longer request either fails in
    the position embeddings or is silently truncated, mid-audit."""
    if not context:
        return
    if prefix + max_new > context:
        raise InputError(f"prefix_tokens {prefix} + max_new_tokens {max_new} = {prefix + max_new} tokens exceeds the "
                         f"model's context ({source} = {context}); lower {flags[0]} or {flags[1]}")
    if answer >= context:
        raise InputError(f"answer_tokens {answer} leaves no room for the question in the model's context "
                         f"({source} = {context}); lower {flags[2]}")
