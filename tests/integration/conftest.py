"""Fixtures the integration tests share."""

import pytest

from .workspace import Workspace, new_workspace


@pytest.fixture
def ws(tmp_path, tiny_raw) -> Workspace:
    """A fresh project copy and tiny mirror, for one test's real-CLI runs."""
    return new_workspace(tmp_path, tiny_raw)
