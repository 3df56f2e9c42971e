"""An MLflow run's whole life: created or reopened, then FINISHED, FAILED or KILLED, never left RUNNING.

Every status this project gives a run is given here: a training's run (opened in
training/attempt.py, finished as its outputs are published), a sweep's or a study's parent run, and
a run whose process died without closing it (closed by the next command that opens the store).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from digitpipe import interrupts
from digitpipe.errors import TrackingError
from digitpipe.interrupts import Interrupted
from digitpipe.tracking import access
from digitpipe.tracking.owner import Owner
from digitpipe.tracking.store import Store
from digitpipe.tracking.unsent import send_unsent

END_REASON = "end_reason"  # tag: why a run that did not finish ended
RESUMED = "resumed"  # tag: how many times the run was continued from a checkpoint


@dataclass
class TrackedRun:
    store: Store
    run_id: str
    resumed: bool = False
    status: str = field(default="RUNNING")

    @classmethod
    def create(cls, store: Store, name: str, tags: Mapping[str, str]) -> TrackedRun:
        run = store.client.create_run(store.experiment_id, run_name=name, tags=dict(tags))
        return cls(store, run.info.run_id)

    @classmethod
    def reopen(cls, store: Store, run_id: str, unsent: Path | None = None) -> tuple[TrackedRun, int]:
        """The run of an interrupted training, RUNNING again and owned by this process, with the
        metric points its last attempt saved in `unsent` sent first; and how many those were."""
        from mlflow.exceptions import MlflowException

        client = store.client
        try:
            run = client.get_run(run_id)
        except MlflowException as err:
            raise TrackingError(
                f"run {run_id} is not in the MLflow store {store.uri}, so it cannot be continued; "
                "use the store it was logged to (mlflow.tracking_uri), or resume=false to start a new run"
            ) from err
        count = int(run.data.tags.get(RESUMED, "0")) + 1
        for key, value in {**Owner.current().tags(), RESUMED: str(count)}.items():
            client.set_tag(run_id, key, value)
        if END_REASON in run.data.tags:
            client.delete_tag(run_id, END_REASON)  # why its last attempt ended; this one goes on
        client.update_run(run_id, status="RUNNING")
        sent = send_unsent(client, run_id, unsent) if unsent else 0
        return cls(store, run_id, resumed=True), sent

    @property
    def client(self):
        return self.store.client

    @property
    def ended(self) -> bool:
        return self.status != "RUNNING"

    def logged_steps(self) -> dict[str, int]:
        """The last step of every metric the run holds (a resumed training logs only later steps)."""
        keys = self.client.get_run(self.run_id).data.metrics
        return {key: max(m.step for m in self.client.get_metric_history(self.run_id, key)) for key in keys}

    def finish(self) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")
        self.status = "FINISHED"

    def fail(self, reason: str) -> None:
        self._end("FAILED", reason)

    def kill(self, reason: str) -> None:
        self._end("KILLED", reason)

    def _end(self, status: str, reason: str) -> None:
        """`status` with the reason as a tag; silent if the store cannot be reached now (the run's
        process tags let the next command that opens the store close it)."""
        if self.ended:
            return
        self.status = status
        # a signal meanwhile (torchrun SIGTERMs rank 0 as its collective fails) waits for the writes
        with interrupts.deferred(), contextlib.suppress(Exception):
            self.client.set_tag(self.run_id, END_REASON, reason[:500])
            self.client.set_terminated(self.run_id, status)


@contextlib.contextmanager
def recorded(run: TrackedRun | None) -> Iterator[TrackedRun | None]:
    """End the run KILLED on a signal, FAILED on any other error; FINISHED is the caller's to set."""
    try:
        yield run
    except Interrupted as stop:
        if run is not None:
            run.kill(str(stop))
        raise
    except BaseException as err:
        if run is not None and (not isinstance(err, TrackingError) or err.store_answers):
            run.fail(f"{type(err).__name__}: {err}".splitlines()[0])
        raise


def close_dead_runs(client, experiment_ids: list[str] | None = None) -> list[str]:
    """Mark KILLED every RUNNING run whose owning process on this host is gone; return their ids.

    Runs of live processes, of other hosts and without owner tags are never touched.
    """
    from mlflow.exceptions import MlflowException

    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    closed = []
    for run in client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=1000):
        owner = Owner.from_tags(run.data.tags)
        if owner is None or owner.is_alive() is not False:
            continue
        reason = f"{owner} ended without closing the run (found {time.strftime('%Y-%m-%d %H:%M:%S')})"
        try:
            client.set_tag(run.info.run_id, END_REASON, reason)
            client.set_terminated(run.info.run_id, "KILLED")
        except MlflowException as err:
            if access.is_denied(err):  # another user's run on a shared host and server: theirs to close
                continue
            raise
        closed.append(run.info.run_id)
    return closed
