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


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The user's project directory (the DVC repository holding the workspace), also from a
    pipeline in a subdirectory (pipelines/<study>/, a DVC project of its own inside the main one)
    and from DVC's experiment copies.

    DVC runs `dvc exp run --temp` and queued experiments in <project>/.dvc/tmp/exps/<tmp>,
    a throwaway copy; anything that must outlive the run (the MLflow store) belongs above it.
    Of nested DVC projects in one git repository, the outermost is the project.
    """
    workspace = workspace_root(start)
    parts = workspace.parts
    if ".dvc" in parts:
        return Path(*parts[: parts.index(".dvc")])
    nearest = outermost = None
    for directory in (workspace, *workspace.parents):
        if (directory / ".dvc").is_dir():
            nearest, outermost = nearest or directory, directory
        if (directory / ".git").exists():
            return outermost or workspace
    return nearest or workspace  # no git repository: the nearest DVC project


def resolve(path: str | os.PathLike, root: Path | None = None) -> Path:
    """Resolve a configured path against the workspace root (absolute paths pass through)."""
    path = Path(path)
    return path if path.is_absolute() else (root or workspace_root()) / path
