"""`TrainConfig`: how one trial trains, and the one home of the training defaults.

Two different values exist for a training key:

- its *default*, the `TrainConfig` field default: what a space that leaves the key out gets
  (``momentum = 0.9`` unless the space says otherwise). `loader.TRAIN_DEFAULTS` is derived from it.
- its *unused value*: what a trial records (in ``best.json`` and the model card) for a key its
  optimiser or schedule does not use, e.g. the momentum of an Adam trial. That is `UNUSED_VALUES`
  where listed, else the default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How one trial trains. The field defaults are the defaults of every search space."""

    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: int = 0
    plateau_factor: float = 0.1
    plateau_patience: int = 5
    batch_size: int = 64
    label_smoothing: float = 0.0


# Unused keys whose recorded value is not their default: an optimiser without momentum (Adam,
# AdamW) records momentum 0.0, not SGD's default 0.9.
UNUSED_VALUES: Mapping[str, Any] = {"momentum": 0.0}


def train_defaults() -> dict[str, Any]:
    """Every `TrainConfig` field's default, by name."""
    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def train_config_from(values: Mapping[str, Any]) -> TrainConfig:
    """The `TrainConfig` of a trial's canonical `values`; keys it does not use take their unused value."""
    fields = train_defaults()
    return TrainConfig(**{**UNUSED_VALUES, **{k: v for k, v in values.items() if k in fields}})
