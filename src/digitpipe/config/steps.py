"""`train_step`: how the optimizer steps run, decided from the config before anything is built.

    cuda_graph: auto        on one CUDA GPU, each step is replayed as a CUDA graph (digitpipe/steps/)
    steps_per_batch: auto   steps per Lightning batch: GRAPHED_STEPS_PER_BATCH with CUDA graphs, else 1

With steps_per_batch N > 1 the loader hands the module N batches at once and the module runs their
N optimizer steps itself (Lightning's manual optimization), so Lightning's per-batch work (loops,
hooks, callbacks, progress) is paid once per N steps; the batches, their order and the steps are
the same as with N = 1. `auto` falls back to eager steps, one per batch, where a graph cannot serve
(the reason is logged); naming `true` there is a config error instead.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig

from digitpipe.errors import ConfigError

log = logging.getLogger(__name__)

# Lightning's per-batch work spread over this many graphed steps makes it small beside the steps
# themselves; 20 left it visible (docs/speed.md, "On a GPU, with CUDA graphs")
GRAPHED_STEPS_PER_BATCH = 50


@dataclass(frozen=True)
class StepPlan:
    cuda_graph: bool
    steps_per_batch: int

    @property
    def manual(self) -> bool:
        """True where the module runs its steps itself (Lightning's manual optimization)."""
        return self.cuda_graph or self.steps_per_batch > 1


def _on_cuda(trainer: Mapping[str, Any]) -> bool:
    # Lightning's "gpu" also means Apple's MPS: a CUDA graph needs CUDA itself
    return trainer.get("accelerator", "auto") in ("gpu", "cuda", "auto") and torch.cuda.is_available()


def _single_process(trainer: Mapping[str, Any]) -> bool:
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if devices in ("auto", -1, "-1"):
        devices = torch.cuda.device_count() if _on_cuda(trainer) else 1
    one_device = devices in (1, "1") or (isinstance(devices, list) and len(devices) == 1)
    return one_device and nodes == 1 and trainer.get("strategy", "auto") in ("auto", "single_device")


def _is_set(trainer: Mapping[str, Any], key: str, unset: tuple) -> bool:
    return trainer.get(key) not in unset


def manual_obstacles(cfg: DictConfig, trainer: Mapping[str, Any]) -> list[str]:
    """What keeps the module from running its own steps (a graph, or steps_per_batch > 1)."""
    obstacles = []
    if not _single_process(trainer):
        obstacles.append("the training runs in several processes (DDP)")
    if cfg.get("scheduler"):
        obstacles.append("a learning-rate scheduler is configured (it is stepped by Lightning)")
    if "diagnostics" in (cfg.get("callbacks") or {}):
        obstacles.append("diagnostics=on measures gradients between backward and update")
    if str(trainer.get("precision")) in ("16-mixed", "16"):
        obstacles.append(f"precision {trainer['precision']} (its gradient scaler steps with Lightning's)")
    if _is_set(trainer, "gradient_clip_val", (None, 0)):
        obstacles.append("trainer.gradient_clip_val is set")
    if _is_set(trainer, "accumulate_grad_batches", (None, 1)):
        obstacles.append("trainer.accumulate_grad_batches is set")
    return obstacles


def grouping_obstacles(trainer: Mapping[str, Any]) -> list[str]:
    """Trainer limits that Lightning counts in its batches, which steps_per_batch > 1 would change."""
    limits = {
        "max_steps": (None, -1), "min_steps": (None,), "limit_train_batches": (None, 1.0),
        "val_check_interval": (None, 1.0), "fast_dev_run": (None, False, 0),
    }  # fmt: skip
    set_limits = [key for key, unset in limits.items() if _is_set(trainer, key, unset)]
    return [f"trainer.{key} counts Lightning batches" for key in set_limits]


def graph_obstacles(cfg: DictConfig, trainer: Mapping[str, Any]) -> list[str]:
    """Why a CUDA graph cannot run this training's steps (empty: it can)."""
    obstacles = [] if _on_cuda(trainer) else ["the training does not run on a CUDA GPU"]
    obstacles += manual_obstacles(cfg, trainer)
    precision = str(trainer.get("precision"))
    if precision not in ("32-true", "32", "16-mixed", "16"):  # (16-mixed is a manual obstacle)
        reason = "graphs run 32-true; autocast's cast cache is not capturable"
        obstacles.append(f"precision {precision} ({reason})")
    optimizer = get_class(cfg.optimizer._target_)
    if "capturable" not in inspect.signature(optimizer).parameters:
        obstacles.append(f"{optimizer.__name__} has no capturable update")
    if trainer.get("detect_anomaly"):
        obstacles.append("trainer.detect_anomaly checks every gradient on the host")
    return obstacles


def plan_steps(cfg: DictConfig, trainer: Mapping[str, Any], explain: bool = True) -> StepPlan:
    """The plan for `cfg` (its train_step values already checked), given the trainer settings
    `trainer` with the precision resolved; with `explain`, why `auto` chose less than a graph of
    GRAPHED_STEPS_PER_BATCH steps per batch on a CUDA GPU is logged."""
    graph, per_batch = cfg.train_step.cuda_graph, cfg.train_step.steps_per_batch
    if graph is not False:
        obstacles = graph_obstacles(cfg, trainer)
        if obstacles and graph is True:
            raise ConfigError(
                f"train_step.cuda_graph=true cannot be used here: {'; '.join(obstacles)}. "
                "Use train_step.cuda_graph=auto or false"
            )
        if obstacles and explain and _on_cuda(trainer):
            log.info("training steps run eagerly, not as a CUDA graph: %s", "; ".join(obstacles))
        graph = not obstacles
    if per_batch == "auto":
        limits = grouping_obstacles(trainer) if graph else []
        if limits and explain:
            log.info("one training step per Lightning batch: %s", "; ".join(limits))
        per_batch = GRAPHED_STEPS_PER_BATCH if graph and not limits else 1
    if per_batch > 1 and (obstacles := manual_obstacles(cfg, trainer) + grouping_obstacles(trainer)):
        raise ConfigError(
            f"train_step.steps_per_batch={per_batch} cannot be used here: {'; '.join(obstacles)}. "
            "Use train_step.steps_per_batch=1"
        )
    return StepPlan(graph, per_batch)
