"""What a run is called and tagged with: the config that made it, the code, the process."""

from __future__ import annotations

import getpass
import os
import subprocess
from typing import Any

from omegaconf import DictConfig, OmegaConf

from digitpipe.environment import DVC_EXP_NAME
from digitpipe.paths import workspace_root
from digitpipe.tracking import access
from digitpipe.tracking.owner import Owner


def run_name(cfg: DictConfig) -> str:
    """Say what was trained, so that runs that differ are told apart in the runs table: activation,
    optimizer, learning rate, schedule, batch, epochs, seed, a precision chosen by name, and the DVC
    experiment when there is one (e.g. "relu-rmsprop-lr0.001-b64-5ep-s42")."""
    if cfg.mlflow.run_name:
        return cfg.mlflow.run_name

    def short(target: str) -> str:
        return target.rsplit(".", 1)[-1].lower()

    parts = [cfg.model.activation, short(cfg.optimizer._target_), f"lr{cfg.optimizer.lr:g}"]
    if cfg.get("scheduler"):
        parts.append(short(cfg.scheduler._target_))
    parts += [f"b{cfg.data.batch_size}", f"{cfg.trainer.max_epochs}ep", f"s{cfg.seed}"]
    if cfg.trainer.precision != "auto":
        parts.append(str(cfg.trainer.precision))
    name = "-".join(parts)
    experiment = os.environ.get(DVC_EXP_NAME)
    return f"{experiment}: {name}" if experiment else name


def flatten_config(cfg: DictConfig) -> dict[str, Any]:
    """Dotted keys, the same spelling as a Hydra override (model.activation=...)."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def git_state() -> dict[str, str]:
    """Commit and dirty flag of the workspace, as MLflow tags; empty outside a git repo."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=workspace_root(), capture_output=True, text=True)
        if out.returncode:
            raise OSError(out.stderr)
        return out.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except OSError:
        return {}
    return {"mlflow.source.git.commit": commit, "git.dirty": str(dirty).lower()}


def run_tags() -> dict[str, str]:
    """Git state, the DVC experiment, the owning process (host, PID, start time) and the user: the
    tracking server's login where there is one (the UI's "User" column), else the local account."""
    tags = {**git_state(), **Owner.current().tags(), "mlflow.user": access.user() or local_user()}
    if os.environ.get(DVC_EXP_NAME):
        tags["dvc.exp_name"] = os.environ[DVC_EXP_NAME]
    return tags


def local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's UID with no passwd entry
        return "unknown"
