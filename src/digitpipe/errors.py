"""Errors a user can cause, and the one place that turns them into a clear CLI exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """A problem the user can fix; its message says what is wrong and how to fix it."""


class ConfigError(UserError):
    """A configuration value is invalid."""


class DataError(UserError):
    """Input data is missing, corrupt or malformed."""


class DownloadError(DataError):
    """No mirror could deliver a verified file."""


def exit_on_user_error(func: Callable[..., T]) -> Callable[..., T]:
    """Print a UserError as one line on stderr and exit with status 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper
