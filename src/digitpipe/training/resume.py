"""Whether a training starts a new run or continues an interrupted one (`resume=auto|true|false|<run id>`)."""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

import digitpipe
from digitpipe.environment import RESUME_CHECKPOINT
from digitpipe.errors import ConfigError
from digitpipe.tracking.metadata import flatten_config
from digitpipe.training.run_dir import RunDir, interrupted_runs, read_run_state

# The settings that change what a training makes, as config keys (a key and everything under it):
# a resume must match them. The knobs (params.yaml: conf/knobs/default.yaml) are among them, and the
# train stage reruns on those (its `params:`) and on every other one through the config it runs and
# depends on, reports/stage_config.yaml (tests/unit/test_resume_plan.py). The rest may differ
# between a training and its resume: where runs are logged (mlflow), paths, mirrors, test_after_fit
# and resume itself.
RESULT_KEYS = (
    "seed", "model", "optimizer", "scheduler", "trainer", "train_step", "distributed", "callbacks",
    "data.batch_size", "data.eval_batch_size", "data.normalize", "data.name", "data.image_size",
    "data.num_classes", "data.val_size", "data.split_seed", "data.files",
)  # fmt: skip


def is_result_key(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in RESULT_KEYS)


@functools.cache  # the code a process runs is the code it imported: hashed once (a search trains many times)
def code_digest() -> str:
    """sha256 over the package's source: a checkpoint resumes only under the code that made it."""
    package = Path(digitpipe.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def identity(cfg: DictConfig) -> dict[str, Any]:
    """What makes two trainings the same: every setting that changes the result, and the code."""
    config = {k: v for k, v in flatten_config(cfg).items() if is_result_key(k)}
    return {"config": config, "code": code_digest()}


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two identities ("model.activation relu -> sigmoid")."""
    if not saved:
        return ["it was made by an older version that did not record its config"]
    old, new = saved.get("config", {}), current["config"]
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    found = [f"{k} {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in changed]
    if saved.get("code") != current["code"]:
        found.append("the code in src/digitpipe")
    return found


@dataclass(frozen=True)
class Plan:
    """Continue `run_dir`'s run from its last checkpoint, or (run_dir None) start a new run."""

    run_dir: RunDir | None = None
    notices: list[str] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path | None:
        return self.run_dir.last if self.run_dir else None


def externally_launched() -> bool:
    """Started by torchrun (WORLD_SIZE) or SLURM (SLURM_NTASKS) with the other ranks: no rank can tell
    the others its choice (deciding alone, rank 0 resumed and rank 1, finding the run held, did not)."""
    world = os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or "1"
    return int(world) > 1 and RESUME_CHECKPOINT not in os.environ


def plan_start(mode: Any, root: Path, current: dict[str, Any], is_launcher: bool) -> Plan:
    """Decide on the launching process; the DDP ranks it starts read its decision from the
    environment (distributed/launch.py)."""
    if RESUME_CHECKPOINT in os.environ and not is_launcher:
        checkpoint = os.environ[RESUME_CHECKPOINT]
        return Plan(RunDir(Path(checkpoint).parent) if checkpoint else None)
    if mode is False:
        return Plan()
    if isinstance(mode, str) and mode != "auto":
        return _named(RunDir(root / mode), current, check_owner=is_launcher)
    if externally_launched():
        if mode is True:
            raise ConfigError("under torchrun or SLURM every rank must know the run: resume=<run id>")
        return Plan()
    candidates = interrupted_runs(root)
    if mode is True:
        if not candidates:
            raise ConfigError(
                f"resume=true, but {root}/ holds no interrupted training; resume=false starts one"
            )
        return _named(candidates[0], current, check_owner=False)
    return _automatic(candidates, current)


def _named(run_dir: RunDir, current: dict[str, Any], check_owner: bool) -> Plan:
    if not run_dir.last.is_file():
        raise ConfigError(f"resume={run_dir.run_id}: {run_dir.last} does not exist")
    if check_owner and run_dir.is_held():
        raise ConfigError(f"resume={run_dir.run_id}: that training is still running")
    found = differences(read_run_state(run_dir.last).get("identity", {}), current)
    if found:
        raise ConfigError(
            f"cannot resume run {run_dir.run_id}: this config differs from the one it was trained with "
            f"({'; '.join(found)}); rerun with its settings, or resume=false to start a new run"
        )
    return Plan(run_dir)


def _automatic(candidates: list[RunDir], current: dict[str, Any]) -> Plan:
    notices = []
    for run_dir in candidates:
        try:
            found = differences(read_run_state(run_dir.last).get("identity", {}), current)
        except Exception as err:  # a damaged leftover must not stop a new training
            notices.append(f"{run_dir.path} is unreadable ({err}); ignoring it")
            continue
        if not found:
            return Plan(run_dir, notices)
        notices.append(
            f"{run_dir.path} holds an interrupted training with other settings ({'; '.join(found[:3])}); "
            f"starting a new run (resume={run_dir.run_id} with its settings continues it)"
        )
    return Plan(None, notices)
