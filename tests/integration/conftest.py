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
