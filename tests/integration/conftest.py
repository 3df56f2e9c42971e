"""Fixtures the integration tests share."""

import shutil
import sqlite3
from pathlib import Path

import pytest

from ..conftest import copy_project, run_cli, write_mirror
from .workspace import Workspace, new_workspace


@pytest.fixture(scope="session")
def built(tmp_path_factory, tiny) -> tuple[Path, dict[str, str]]:
    """One project per test process on which `dvc repro` ran once, on tiny data, and its environment
    (MNIST_MIRROR): read it, or take a copy_of it to change anything."""
    base = tmp_path_factory.mktemp("built")
    project = copy_project(base / "project")
    tiny.shrink(project)
    env = {"MNIST_MIRROR": str(write_mirror(base / "mirror", tiny.raw))}
    result = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return project, env


def copy_of(project: Path, dest: Path) -> Path:
    """A copy of a project that shares nothing with it: git, DVC's cache, the outputs, and an MLflow
    store whose runs and models point at the copy's own artifacts (MLflow records absolute paths)."""
    shutil.copytree(project, dest, symlinks=True)
    if (dest / "mlflow.db").is_file():
        with sqlite3.connect(dest / "mlflow.db") as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                    if column[2].upper().startswith(("VARCHAR", "TEXT")):
                        name = column[1]
                        db.execute(
                            f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?)',
                            (str(project), str(dest)),
                        )
    return dest


@pytest.fixture
def built_copy(built, tmp_path) -> tuple[Path, dict[str, str]]:
    """A copy of the built project for one test to change."""
    project, env = built
    return copy_of(project, tmp_path / "project"), env


@pytest.fixture
def ws(tmp_path, tiny_raw) -> Workspace:
    """A fresh project copy and tiny mirror, for one test's real-CLI runs."""
    return new_workspace(tmp_path, tiny_raw)


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server per test process; a test makes its own database on it."""
    import shutil
    import tempfile
    from pathlib import Path

    from .postgres import start_postgres

    base = Path(tempfile.mkdtemp(prefix="digitpipe-pg-"))  # not under pytest's root-only tmp dirs
    server = start_postgres(base)
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def team(postgres, tmp_path_factory, request):
    """docs/team.md's server (PostgreSQL, S3, basic auth) for the tests of one file, with its users."""
    from .team import start_team_server

    name = request.module.__name__.rsplit(".", 1)[-1]
    server = start_team_server(tmp_path_factory.mktemp("team"), postgres, name)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def slurm():
    """A one-node SLURM cluster per test process (tests/integration/slurm.py)."""
    import shutil
    import tempfile
    from pathlib import Path

    from .slurm import start_slurm

    base = Path(tempfile.mkdtemp(prefix="digitpipe-slurm-"))
    cluster = start_slurm(base)
    yield cluster
    cluster.stop()
    shutil.rmtree(base, ignore_errors=True)
