"""The study's parent MLflow run: one per study and set of study parameters, holding the table and
figures, its cells as children.

Found again on every aggregate (tags digitpipe_study and digitpipe_study.params), so a rerun with the
same parameters updates it instead of adding one; cells it held that are no longer part of the study
(rerun since) stop being its children. Other parameters make another study: a parent of its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path

from digitpipe.tracking.metadata import run_tags
from digitpipe.tracking.run import TrackedRun, recorded
from digitpipe.tracking.store import Store, store_failures

STUDY_TAG, PARAMS_TAG, PARENT = "digitpipe_study", "digitpipe_study.params", "mlflow.parentRunId"


def params_digest(params: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(params), sort_keys=True).encode()).hexdigest()[:16]


def find_or_create(store: Store, study: str, params: Mapping[str, str]) -> TrackedRun:
    """The parent run of this study with these parameters, RUNNING; created with them if none."""
    from mlflow.entities import Param

    digest = params_digest(params)
    found = store.client.search_runs(
        [store.experiment_id],
        filter_string=f"tags.`{STUDY_TAG}` = '{study}' and tags.`{PARAMS_TAG}` = '{digest}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if found:
        return TrackedRun.reopen(store, found[0].info.run_id)[0]
    run = TrackedRun.create(
        store, study.replace("_", " "), {**run_tags(), STUDY_TAG: study, PARAMS_TAG: digest}
    )
    store.client.log_batch(run.run_id, params=[Param(k, v) for k, v in params.items()])
    return run


def record_parent(
    store: Store,
    study: str,
    children: Mapping[str, str],
    metrics: Mapping[str, float],
    params: Mapping[str, str],
    files: list[Path],
) -> str:
    """The parent run with these children (cell name -> run id), metrics, params and files; returns its id."""
    from mlflow.entities import Metric

    client = store.client
    with store_failures(store.uri, "recording the study's parent run"):
        run = find_or_create(store, study, params)
        with recorded(run):
            former = client.search_runs(
                [store.experiment_id], filter_string=f"tags.`{PARENT}` = '{run.run_id}'"
            )
            for child in former:
                if child.info.run_id not in children.values():
                    client.delete_tag(child.info.run_id, PARENT)  # a cell the study no longer holds
            for child in children.values():
                client.set_tag(child, PARENT, run.run_id)
            now = int(time.time() * 1000)
            points = [Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(v)]
            client.log_batch(run.run_id, metrics=points)
            for path in files:
                client.log_artifact(run.run_id, str(path))
            run.finish()
    return run.run_id
