"""The train stage's outputs: checked writable before training, replaced as one set after it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from filelock import FileLock

from digitpipe import atomic, interrupts
from digitpipe.errors import OutputError


def check_writable(directories: Iterable[Path]) -> None:
    """One line before any work if an output directory cannot be written (read-only, no permission)."""
    for directory in directories:
        existing = next(d for d in (directory, *directory.parents) if d.exists())  # none made here
        try:
            with tempfile.TemporaryDirectory(dir=existing):
                pass
        except OSError as err:
            fault = f"cannot write to {existing}/" if existing == directory else (
                f"cannot create {directory}/: {existing}/ takes no new files"
            )  # fmt: skip
            raise OutputError(
                f"{fault} ({err.strerror or err}); make it writable or point the corresponding paths.* "
                "setting elsewhere"
            ) from err


def publish(
    outputs: Mapping[Path, bytes | None], lock: Path, record: Callable[[], None], retire: Path
) -> None:
    """Replace the outputs with these, as one set: written beside their targets first, then `record`
    (the model registered, the run marked FINISHED), the renames, and the run's checkpoint directory
    `retire` taken out of reach of a resume, with SIGINT/SIGTERM held back until all are done.

    Concurrent trainings in one workspace publish one at a time; the last to finish wins, whole.
    Order the mapping so that the file naming the run comes last.
    """
    lock.parent.mkdir(parents=True, exist_ok=True)
    retired = retire.with_name(f".{retire.name}.finished")
    with FileLock(lock), atomic.staged(outputs) as commit, interrupts.deferred():
        record()
        commit()
        os.replace(retire, retired)
    shutil.rmtree(retired, ignore_errors=True)
