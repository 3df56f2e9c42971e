"""Where the workspace and the MLflow store are, whatever the current directory."""

from __future__ import annotations

import os
from pathlib import Path


def workspace_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest directory holding dvc.yaml: the project, or DVC's copy of it for an experiment."""
    here = Path(start or os.getcwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    return here


def project_root() -> Path:
    """The user's project, where the MLflow store belongs: the outermost DVC project of the git
    repository around the workspace, also from a pipeline in pipelines/<name>/ (a DVC project of its
    own inside it). DVC names the workspace's DVC project in DVC_ROOT, also for `dvc exp run --temp`
    and queued runs, whose stages run in a throwaway copy under <that project>/.dvc/tmp/exps/."""
    here = Path(os.environ.get("DVC_ROOT") or workspace_root()).resolve()
    nearest = outermost = None
    for directory in (here, *here.parents):
        if (directory / ".dvc").is_dir():
            nearest, outermost = nearest or directory, directory
        if (directory / ".git").exists():
            return outermost or here
    return nearest or here  # no git repository: the nearest DVC project


def resolve(path: str | os.PathLike, root: Path | None = None) -> Path:
    """Resolve a configured path against the workspace root (absolute paths pass through)."""
    path = Path(path)
    return path if path.is_absolute() else (root or workspace_root()) / path
