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


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the bad value and the fix for the first invalid setting."""
    check_activation(cfg.model.activation)
    check_init(cfg.model.init)
    for key, meaning in POSITIVE.items():
        value = _get(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{key}={value!r} is invalid: {meaning} must be a positive number")
