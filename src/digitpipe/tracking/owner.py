"""Which process owns a RUNNING run, and whether it is still alive (tracking/run.py closes the runs
of dead ones)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

HOST, PID, STARTED = "process.host", "process.pid", "process.started"
STARTED_TOLERANCE_S = 1.0  # create times are stored with 0.01 s resolution


@dataclass(frozen=True)
class Owner:
    """A process, identified across PID reuse by its host, PID and start time."""

    host: str
    pid: int
    started: float

    @classmethod
    def current(cls) -> Owner:
        process = psutil.Process()
        return cls(socket.gethostname(), process.pid, process.create_time())

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Owner | None:
        try:
            return cls(tags[HOST], int(tags[PID]), float(tags[STARTED]))
        except (KeyError, ValueError):
            return None  # not a run of this project (or of a version before these tags)

    def tags(self) -> dict[str, str]:
        return {HOST: self.host, PID: str(self.pid), STARTED: f"{self.started:.2f}"}

    def is_alive(self) -> bool | None:
        """True or False on this host; None for another host, where a PID says nothing."""
        if self.host != socket.gethostname():
            return None
        try:
            started = psutil.Process(self.pid).create_time()
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True
        return abs(started - self.started) < STARTED_TOLERANCE_S  # else: the PID was reused

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host}"
