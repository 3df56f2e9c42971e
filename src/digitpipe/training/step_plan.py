"""`train_step`: how the optimizer steps run, resolved from the config before anything is built.

    cuda_graph: auto        on one CUDA GPU, each step is replayed as a CUDA graph (step_runners.py)
    steps_per_batch: auto   steps per Lightning batch: 50 with CUDA graphs, else 1

With steps_per_batch N > 1 the data loader hands the module N batches at once and the module runs
their N optimizer steps itself (Lightning's manual optimization), so Lightning's per-batch work
(loops, hooks, callbacks, progress) is paid once per N steps; the batches, their order and the
steps are the same as with N = 1. `auto` falls back to eager steps, one per batch, where a graph
cannot serve (the reason is logged); naming `true` there is a config error instead.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import torch
from hydra.utils import get_class
from omegaconf import DictConfig

from digitpipe.errors import ConfigError

log = logging.getLogger(__name__)

# Lightning's work per batch (~1.6 ms on the host) spread over 50 steps: on an H100, 3.5-4.7 s for
# the seed recipe's fit against 5.4-5.6 s at 20 steps and 15.1 s at 1 (README, "Speed")
GRAPHED_STEPS_PER_BATCH = 50


@dataclass(frozen=True)
class StepPlan:
    cuda_graph: bool
    steps_per_batch: int

    @property
    def manual(self) -> bool:
        """True where the module runs its steps itself (Lightning's manual optimization)."""
        return self.cuda_graph or self.steps_per_batch > 1


def _on_cuda(settings: dict) -> bool:
    # Lightning's "gpu" also means Apple's MPS: a CUDA graph needs CUDA itself
    return settings.get("accelerator", "auto") in ("gpu", "cuda", "auto") and torch.cuda.is_available()


def _single_process(settings: dict) -> bool:
    devices, nodes = settings.get("devices", 1), settings.get("num_nodes", 1)
    if devices in ("auto", -1, "-1"):
        devices = torch.cuda.device_count() if _on_cuda(settings) else 1
    one_device = devices in (1, "1") or (isinstance(devices, list) and len(devices) == 1)
    return one_device and nodes == 1 and settings.get("strategy", "auto") in ("auto", "single_device")


def _is_set(settings: dict, key: str, unset: tuple) -> bool:
    return settings.get(key) not in unset


def manual_obstacles(cfg: DictConfig, settings: dict) -> list[str]:
    """What keeps the module from running its own steps (a graph, or steps_per_batch > 1)."""
    obstacles = []
    if not _single_process(settings):
        obstacles.append("the training runs in several processes (DDP)")
    if cfg.get("scheduler"):
        obstacles.append("a learning-rate scheduler is configured (it is stepped by Lightning)")
    if "diagnostics" in (cfg.get("callbacks") or {}):
        obstacles.append("diagnostics=on measures gradients between backward and update")
    if str(settings.get("precision")) in ("16-mixed", "16"):
        obstacles.append(f"precision {settings['precision']} (its gradient scaler steps with Lightning's)")
    if _is_set(settings, "gradient_clip_val", (None, 0)):
        obstacles.append("trainer.gradient_clip_val is set")
    if _is_set(settings, "accumulate_grad_batches", (None, 1)):
        obstacles.append("trainer.accumulate_grad_batches is set")
    return obstacles


def grouping_obstacles(settings: dict) -> list[str]:
    """Trainer limits that Lightning counts in its batches, which steps_per_batch > 1 would change."""
    limits = {
        "max_steps": (None, -1), "min_steps": (None,), "limit_train_batches": (None, 1.0),
        "val_check_interval": (None, 1.0), "fast_dev_run": (None, False, 0),
    }  # fmt: skip
    set_limits = [key for key, unset in limits.items() if _is_set(settings, key, unset)]
    return [f"trainer.{key} counts Lightning batches" for key in set_limits]


def graph_obstacles(cfg: DictConfig, settings: dict) -> list[str]:
    """Why a CUDA graph cannot run this training's steps (empty: it can)."""
    obstacles = [] if _on_cuda(settings) else ["the training does not run on a CUDA GPU"]
    obstacles += manual_obstacles(cfg, settings)
    precision = str(settings.get("precision"))
    if precision not in ("32-true", "32", "16-mixed", "16"):  # (16-mixed is a manual obstacle)
        reason = "graphs run 32-true; autocast's cast cache is not capturable"
        obstacles.append(f"precision {precision} ({reason})")
    optimizer = get_class(cfg.optimizer._target_)
    if "capturable" not in inspect.signature(optimizer).parameters:
        obstacles.append(f"{optimizer.__name__} has no capturable update")
    if settings.get("detect_anomaly"):
        obstacles.append("trainer.detect_anomaly checks every gradient on the host")
    return obstacles


def _setting(value, key: str, allowed: str):
    if value == "auto" or (isinstance(value, bool) and key == "cuda_graph"):
        return value
    if key == "steps_per_batch" and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"train_step.{key}={value!r} is invalid: give {allowed}")


def plan_steps(cfg: DictConfig, settings: dict, explain: bool = True) -> StepPlan:
    """The plan for `cfg`, given lightning.Trainer's resolved keyword arguments `settings`; with
    `explain`, why `auto` chose less than a graph of 50 steps per batch on a CUDA GPU is logged."""
    step = cfg.train_step
    graph = _setting(step.cuda_graph, "cuda_graph", "auto, true or false")
    per_batch = _setting(step.steps_per_batch, "steps_per_batch", "auto or a whole number of steps >= 1")
    if graph is not False:
        obstacles = graph_obstacles(cfg, settings)
        if obstacles and graph is True:
            raise ConfigError(
                f"train_step.cuda_graph=true cannot be used here: {'; '.join(obstacles)}. "
                "Use train_step.cuda_graph=auto or false"
            )
        if obstacles and explain and _on_cuda(settings):
            log.info("training steps run eagerly, not as a CUDA graph: %s", "; ".join(obstacles))
        graph = not obstacles
    if per_batch == "auto":
        limits = grouping_obstacles(settings) if graph else []
        if limits and explain:
            log.info("one training step per Lightning batch: %s", "; ".join(limits))
        per_batch = GRAPHED_STEPS_PER_BATCH if graph and not limits else 1
    if per_batch > 1 and (obstacles := manual_obstacles(cfg, settings) + grouping_obstacles(settings)):
        raise ConfigError(
            f"train_step.steps_per_batch={per_batch} cannot be used here: {'; '.join(obstacles)}. "
            "Use train_step.steps_per_batch=1"
        )
    return StepPlan(graph, per_batch)
