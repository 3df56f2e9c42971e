"""Fixtures the integration tests share."""

import pytest

from .workspace import Workspace, new_workspace


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
