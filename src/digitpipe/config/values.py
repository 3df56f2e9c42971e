"""Checks on the composed config's values: each names the bad value, what is allowed and the fix."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from digitpipe.config.numbers import check_seed, is_positive_number, is_whole
from digitpipe.errors import ConfigError
from digitpipe.models.convnet import check_activation, check_init

POSITIVE = {
    "optimizer.lr": "the learning rate",
    "data.batch_size": "the training batch size",
    "data.eval_batch_size": "the evaluation batch size",
    "trainer.max_epochs": "the number of epochs",
    "data.val_size": "the validation set size",
}
DIAGNOSTICS_POSITIVE = {
    "every_n_steps": "optimizer steps between gradient-norm measurements",
    "probe_size": "the number of probe images",
    "saturation_threshold": "the |z| above which a pre-activation counts as saturated",
}
BATCH_SCOPES = ("global", "per_device")


def _get(cfg: DictConfig, dotted: str) -> Any:
    node = cfg
    for key in dotted.split("."):
        node = node[key]
    return node


def check_diagnostics(cfg: DictConfig) -> None:
    """The diagnostics callback's settings, when diagnostics=on put it among the callbacks."""
    diagnostics = (cfg.get("callbacks") or {}).get("diagnostics")
    if not diagnostics:
        return
    for key, meaning in DIAGNOSTICS_POSITIVE.items():
        if not is_positive_number(diagnostics[key]):
            raise ConfigError(
                f"callbacks.diagnostics.{key}={diagnostics[key]!r} is invalid: {meaning} must be positive"
            )
    if not is_whole(steps := diagnostics.detail_steps, 0):
        raise ConfigError(
            f"callbacks.diagnostics.detail_steps={steps!r} is invalid: give the number of first steps "
            "measured at every step (0 or more)"
        )


def check_train_step(cfg: DictConfig) -> None:
    cuda_graph, per_batch = cfg.train_step.cuda_graph, cfg.train_step.steps_per_batch
    if cuda_graph != "auto" and not isinstance(cuda_graph, bool):
        raise ConfigError(f"train_step.cuda_graph={cuda_graph!r} is invalid: give auto, true or false")
    if per_batch != "auto" and not is_whole(per_batch, 1):
        raise ConfigError(
            f"train_step.steps_per_batch={per_batch!r} is invalid: give auto or a whole number of steps >= 1"
        )


def check_tracking(cfg: DictConfig) -> None:
    interval = cfg.mlflow.system_metrics_interval_s
    if interval is not None and not is_positive_number(interval):
        raise ConfigError(
            f"mlflow.system_metrics_interval_s={interval!r} is invalid: give seconds between samples "
            "(e.g. 5), or null to log no system metrics"
        )


def check_resume(cfg: DictConfig) -> None:
    if cfg.resume not in (True, False, "auto") and not isinstance(cfg.resume, str):
        raise ConfigError(
            f"resume={cfg.resume!r} is invalid: use auto, true, false or the id of an interrupted run"
        )


def check_batch_scope(cfg: DictConfig) -> None:
    if (scope := cfg.distributed.batch_scope) not in BATCH_SCOPES:
        raise ConfigError(f"distributed.batch_scope={scope!r} must be one of: {', '.join(BATCH_SCOPES)}")


def per_process_batch_size(batch_size: int, world_size: int, scope: str) -> int:
    """The batch each process loads: a global batch is split evenly across the processes (known only
    once the Trainer has counted them, so checked then)."""
    if scope == "per_device":
        return batch_size
    if batch_size % world_size:
        raise ConfigError(
            f"data.batch_size={batch_size} is a global batch and does not split evenly over {world_size} "
            f"processes; use a multiple of {world_size}, or distributed.batch_scope=per_device"
        )
    return batch_size // world_size


def check_values(cfg: DictConfig) -> None:
    """Raise ConfigError naming the bad value and the fix for the first invalid setting."""
    check_seed(cfg)
    check_activation(cfg.model.activation)
    check_init(cfg.model.init)
    check_diagnostics(cfg)
    for key, meaning in POSITIVE.items():
        if not is_positive_number(value := _get(cfg, key)):
            raise ConfigError(f"{key}={value!r} is invalid: {meaning} must be a positive number")
    check_tracking(cfg)
    check_train_step(cfg)
    check_resume(cfg)
    check_batch_scope(cfg)
