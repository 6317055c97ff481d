"""Every knob of the demo build (BuildSettings): the models' sizes, training, both unlearning runs and their
stopping rule. All of it goes into the demo cache key (build.cache_key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from auditq.demo.train import ModelConfig, TrainConfig
from auditq.unlearning.config import UnlearnConfig

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class BuildSettings:
    """Every knob of the demo build; all of it goes into the cache key."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=60, lr=3e-3, shuffle_probability=0.3))
    # lr 6e-4, not 5e-5: with 5·retain-NLL pulling back, 5e-5 did not move forget QA at all in
    # 200 steps on this suite; the projection bounds the change anyway. max_steps is per phase.
    fragile: UnlearnConfig = field(default_factory=lambda: UnlearnConfig(
        forget_loss="ga", retain_loss="gdr", retain_weight=5.0, lr=6e-4, max_steps=200))
    fragile_bits: int = 4
    fragile_group_size: int | None = None  # per output channel, as the `rtn4` format groups
    honest: UnlearnConfig = field(default_factory=lambda: UnlearnConfig(
        forget_loss="ga", retain_loss="gdr", retain_weight=5.0, lr=6e-4, max_steps=200))
    stop_forget_em: float = 0.02      # phase 1 ends when forget QA exact match is at most this (2 of 100)
    stop_auc_ratio: float = 1.02      # phase 2 (checked every step) ends when Min-K% AUC(forget vs holdout) <= this x retrain's
    min_retain_ratio: float = 0.7     # never accept retain QA EM below this share of base's
    check_every: int = 5
    mink_k: float = 0.4
    seed: int = 0


DEFAULT_SETTINGS = BuildSettings()
