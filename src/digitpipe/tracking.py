"""MLflow: where runs go, what they are called, what they are tagged with."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from digitpipe.errors import ConfigError
from digitpipe.io import file_digest
from digitpipe.paths import project_root, workspace_root

TRACKING_ENV = "MLFLOW_TRACKING_URI"


def tracking_uri(configured: str | None, env: os._Environ | dict = os.environ) -> str:
    """Config value, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the project root."""
    uri = configured or env.get(TRACKING_ENV)
    return uri or f"sqlite:///{project_root() / 'mlflow.db'}"


def artifact_location(uri: str) -> str | None:
    """Local stores keep artifacts beside mlflow.db (not under whatever cwd created the experiment)."""
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        return (project_root() / "mlruns").as_uri()
    return None  # a tracking server decides


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after minutes of client retries, when a tracking server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered: reachable
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, or unset "
            f"{TRACKING_ENV} to log to sqlite:///mlflow.db in the project root"
        ) from err


def run_name(cfg: DictConfig) -> str:
    """Say what was trained: activation, optimizer and learning rate."""
    if cfg.mlflow.run_name:
        return cfg.mlflow.run_name
    optimizer = cfg.optimizer._target_.rsplit(".", 1)[-1].lower()
    return f"{cfg.model.activation}-{optimizer}-lr{cfg.optimizer.lr:g}"


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


def file_md5(path: Path) -> str:
    """The hash DVC records for a file output (md5 of its bytes)."""
    return file_digest(path, "md5")


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
    tags = {"host": socket.gethostname(), **git_state()}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def log_model(uri: str, run_id: str, model: Any, example: Any, registered_name: str | None) -> str:
    """Log `model` into the run with the mlflow.pytorch flavor (torch.export format, loadable
    without this project's code), a signature from `example`, and register it if named."""
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model, name="model", serialization_format="pt2", input_example=example,
            registered_model_name=registered_name or None,
        )  # fmt: skip
    return info.model_uri
