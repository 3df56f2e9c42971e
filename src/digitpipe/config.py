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
    """Raise ConfigError unless `seed` and `data.split_seed` are integers every seeded library
    accepts (preprocess, train)."""
    for key, seed in (("seed", cfg.seed), ("data.split_seed", cfg.data.split_seed)):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ConfigError(
                f"{key}={seed!r} is invalid: the seed must be an integer from 0 to {MAX_SEED} (e.g. {key}=42)"
            )


DIAGNOSTICS_POSITIVE = {
    "every_n_steps": "optimizer steps between gradient-norm measurements",
    "probe_size": "the number of probe images",
    "saturation_threshold": "the |z| above which a pre-activation counts as saturated",
}


def check_diagnostics(cfg: DictConfig) -> None:
    """The diagnostics callback's settings, when diagnostics=on put it among the callbacks."""
    diagnostics = (cfg.get("callbacks") or {}).get("diagnostics")
    if not diagnostics:
        return
    for key, meaning in DIAGNOSTICS_POSITIVE.items():
        if not _is_positive_number(diagnostics[key]):
            raise ConfigError(
                f"callbacks.diagnostics.{key}={diagnostics[key]!r} is invalid: {meaning} must be positive"
            )
    steps = diagnostics.detail_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(
            f"callbacks.diagnostics.detail_steps={steps!r} is invalid: give the number of first steps "
            "measured at every step (0 or more)"
        )


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the bad value and the fix for the first invalid setting."""
    check_seed(cfg)
    check_activation(cfg.model.activation)
    check_init(cfg.model.init)
    check_diagnostics(cfg)
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
