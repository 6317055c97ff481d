"""What one unlearning run is asked to do (UnlearnConfig) and what it reports back (StepLog, UnlearnResult)."""

from __future__ import annotations

from dataclasses import dataclass

FORGET_LOSSES = ("ga", "npo")
RETAIN_LOSSES = ("gdr", "klr", "none")


@dataclass(frozen=True)
class UnlearnConfig:
    """Hyper-parameters of one unlearning run (defaults: the paper's GA_GDR at a small lr)."""

    forget_loss: str = "ga"
    retain_loss: str = "gdr"
    forget_weight: float = 1.0
    retain_weight: float = 1.0
    lr: float = 5e-5
    max_steps: int = 100
    batch_size: int = 16
    retain_batch_size: int = 16
    beta: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float | None = None
    max_length: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.forget_loss not in FORGET_LOSSES:
            raise ValueError(f"forget_loss must be one of {FORGET_LOSSES}, got {self.forget_loss!r}")
        if self.retain_loss not in RETAIN_LOSSES:
            raise ValueError(f"retain_loss must be one of {RETAIN_LOSSES}, got {self.retain_loss!r}")

    @property
    def needs_reference(self) -> bool:
        return self.forget_loss == "npo" or self.retain_loss == "klr"


@dataclass(frozen=True)
class StepLog:
    step: int
    loss: float
    forget_loss: float
    retain_loss: float


@dataclass(frozen=True)
class UnlearnResult:
    steps: int
    stopped_early: bool
    history: tuple[StepLog, ...]
    seconds: float
