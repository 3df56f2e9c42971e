"""An MLflow run's life: created or reopened, then FINISHED, FAILED or KILLED, never left RUNNING."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from digitpipe.errors import TrackingError
from digitpipe.interrupts import Interrupted
from digitpipe.tracking.owner import END_REASON, Owner
from digitpipe.tracking.store import Store

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
    def reopen(cls, store: Store, run_id: str) -> TrackedRun:
        """The run of an interrupted training, RUNNING again and owned by this process."""
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
        return cls(store, run_id, resumed=True)

    @property
    def ended(self) -> bool:
        return self.status != "RUNNING"

    def logged_steps(self) -> dict[str, int]:
        """The last step of every metric the run holds (a resumed training logs only later steps)."""
        client = self.store.client
        keys = client.get_run(self.run_id).data.metrics
        return {key: max(m.step for m in client.get_metric_history(self.run_id, key)) for key in keys}

    def finish(self) -> None:
        self.store.client.set_terminated(self.run_id, "FINISHED")
        self.status = "FINISHED"

    def end(self, status: str, reason: str) -> None:
        """FAILED or KILLED with the reason as a tag; silent if the store cannot be reached now (the
        run's process tags let the next stage that touches the store close it)."""
        if self.ended:
            return
        self.status = status
        with contextlib.suppress(Exception):
            self.store.client.set_tag(self.run_id, END_REASON, reason[:500])
            self.store.client.set_terminated(self.run_id, status)


@contextlib.contextmanager
def recorded(run: TrackedRun | None) -> Iterator[TrackedRun | None]:
    """End the run KILLED on a signal, FAILED on any other error; FINISHED is the caller's to set."""
    try:
        yield run
    except Interrupted as stop:
        if run is not None:
            run.end("KILLED", str(stop))
        raise
    except BaseException as err:
        if run is not None and not isinstance(err, TrackingError):
            run.end("FAILED", f"{type(err).__name__}: {err}".splitlines()[0])
        raise
