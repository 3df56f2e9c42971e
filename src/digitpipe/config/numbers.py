"""Checks of one number in the config (no model, no data): what every stage may check, cheaply."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from digitpipe.errors import ConfigError

MAX_SEED = 2**32 - 1  # numpy's bound; Lightning's seed_everything refuses larger seeds


def is_positive_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


def is_whole(value: Any, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def whole_number(key: str, value: Any, positive: bool = True) -> int:
    if not is_whole(value, 1 if positive else -(2**63)):
        raise ConfigError(
            f"{key}={value!r} is invalid: give {'a positive integer' if positive else 'an integer'}"
        )
    return value


def seconds(key: str, value: Any, meaning: str) -> float:
    if not is_positive_number(value):
        raise ConfigError(f"{key}={value!r} is invalid: give a positive number of seconds ({meaning})")
    return value


def check_seed(cfg: DictConfig) -> None:
    """`seed` and `data.split_seed` are integers every seeded library accepts (preprocess, train)."""
    for key, seed in (("seed", cfg.seed), ("data.split_seed", cfg.data.split_seed)):
        if not is_whole(seed, 0) or seed > MAX_SEED:
            raise ConfigError(
                f"{key}={seed!r} is invalid: the seed must be an integer from 0 to {MAX_SEED} (e.g. {key}=42)"
            )
