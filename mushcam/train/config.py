"""A run's settings (:class:`TrainConfig`, the command line's options, and their checks) and
what one backbone's training produced (:class:`TrainResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mushcam.augment import AugmentConfig
from mushcam.exceptions import MushcamError
from mushcam.train.metrics import SplitMetrics


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a run (the command line's options)."""

    epochs: int = 30
    image_size: int = 224
    batch_size: int = 32
    poisonous_weight: float = 4.0
    inverse_frequency: bool = False
    pretrained: bool = False
    device: str = "auto"
    seed: int = 0
    lr: float | None = None  # None: 1e-3 from scratch, 3e-4 from ImageNet weights
    weight_decay: float = 0.05
    patience: int = 5
    bn_momentum: float = 0.1  # see set_batchnorm_momentum
    augment: AugmentConfig = AugmentConfig()

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 3e-4 if self.pretrained else 1e-3


@dataclass(frozen=True)
class TrainResult:
    """What one backbone's training produced."""

    backbone: str
    checkpoint: Path
    log: Path
    best_epoch: int
    epochs_run: int
    val: SplitMetrics
    test: SplitMetrics | None
    seconds: float
    stopped_early: bool
    interrupted: bool


def check_config(config: TrainConfig) -> None:
    if config.epochs < 1:
        raise MushcamError(f"--epochs must be at least 1; got {config.epochs}")
    if not 32 <= config.image_size <= 2048:
        raise MushcamError(f"--image-size must be between 32 and 2048; got {config.image_size}")
    if config.batch_size < 2:
        raise MushcamError(f"--batch-size must be at least 2 (BatchNorm needs two images); got {config.batch_size}")
    if not config.poisonous_weight > 0:
        raise MushcamError(f"--poisonous-weight must be positive; got {config.poisonous_weight}")
    if not config.learning_rate > 0:
        raise MushcamError(f"--lr must be positive; got {config.learning_rate}")
    if not 0 < config.bn_momentum <= 1:
        raise MushcamError(f"the BatchNorm momentum must be in (0, 1]; got {config.bn_momentum}")
    if config.patience < 1:
        raise MushcamError(f"--patience must be at least 1; got {config.patience}")
