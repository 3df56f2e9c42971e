"""The composed config checked, once, before any work, and what its `auto` settings resolve to here.

Every check of a setting's value is in this package (values.py); a training asks `validate` and
gets the decisions the rest of it builds from (Settings). It imports no Lightning: a bad value
fails in a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from digitpipe.config.precision import resolve_precision
from digitpipe.config.steps import StepPlan, plan_steps
from digitpipe.config.values import check_values


@dataclass(frozen=True)
class Settings:
    """What a valid config's `auto`s became on this machine."""

    precision: str  # trainer.precision
    steps: StepPlan  # train_step


def validate(cfg: DictConfig) -> Settings:
    """Raise ConfigError naming the first bad setting and its fix; else resolve the `auto`s."""
    check_values(cfg)
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    precision = resolve_precision(trainer["precision"], trainer["accelerator"])
    return Settings(precision, plan_steps(cfg, {**trainer, "precision": precision}))
