"""Which process owns a RUNNING run, whether it is still alive, and closing the runs of dead ones."""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

HOST, PID, STARTED = "process.host", "process.pid", "process.started"
END_REASON = "end_reason"
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


def close_dead_runs(client, experiment_ids: list[str] | None = None) -> list[str]:
    """Mark KILLED every RUNNING run whose owning process on this host is gone; return their ids.

    Runs of live processes, of other hosts and without owner tags are never touched.
    """
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    closed = []
    for run in client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=1000):
        owner = Owner.from_tags(run.data.tags)
        if owner is None or owner.is_alive() is not False:
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        client.set_tag(run.info.run_id, END_REASON, f"{owner} ended without closing the run (found {when})")
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
    return closed
