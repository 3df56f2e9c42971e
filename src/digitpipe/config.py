"""Checks on the composed config that must fail before any work is done."""

from __future__ import annotations

from omegaconf import DictConfig

from digitpipe.errors import ConfigError
from digitpipe.models.convnet import check_activation, check_init

POSITIVE = {
    "optimizer.lr": "the learning rate",
    "data.batch_size": "the training batch size",
    "data.eval_batch_size": "the evaluation batch size",
    "trainer.max_epochs": "the number of epochs",
    "data.val_size": "the validation set size",
}


def _get(cfg: DictConfig, dotted: str):
    node = cfg
    for key in dotted.split("."):
        node = node[key]
    return node


def _is_positive_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0


MAX_SEED = 2**32 - 1  # numpy's bound; Lightning's seed_everything refuses larger seeds


def check_seed(cfg: DictConfig) -> None:
    """Raise ConfigError unless `seed` is an integer every seeded library accepts (preprocess, train)."""
    seed = cfg.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(
            f"seed={seed!r} is invalid: the seed must be an integer from 0 to {MAX_SEED} (e.g. seed=42)"
        )


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the bad value and the fix for the first invalid setting."""
    check_seed(cfg)
    check_activation(cfg.model.activation)
    check_init(cfg.model.init)
    for key, meaning in POSITIVE.items():
        value = _get(cfg, key)
        if not _is_positive_number(value):
            raise ConfigError(f"{key}={value!r} is invalid: {meaning} must be a positive number")
    interval = cfg.mlflow.system_metrics_interval_s
    if interval is not None and not _is_positive_number(interval):
        raise ConfigError(
            f"mlflow.system_metrics_interval_s={interval!r} is invalid: give seconds between samples "
            "(e.g. 5), or null to log no system metrics"
        )
