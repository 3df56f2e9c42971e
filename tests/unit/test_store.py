"""The project's MLflow store: the experiment is created with MLflow 3's kind for model training."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from digitpipe.errors import TrackingError
from digitpipe.tracking.store import KIND_TAG, check_sqlite_file, open_store

from ..conftest import compose_config


def store_config(uri: str, experiment: str = "kinds"):
    mlflow = compose_config().mlflow
    mlflow.tracking_uri, mlflow.experiment_name = uri, experiment
    return mlflow


def test_a_new_experiment_is_of_the_model_training_kind(sqlite_store):
    store = open_store(store_config(sqlite_store))
    tags = MlflowClient(store.uri).get_experiment(store.experiment_id).tags
    assert tags[KIND_TAG] == "custom_model_development"


def test_an_older_experiment_gets_the_kind_and_a_kind_chosen_in_the_ui_is_kept(sqlite_store):
    cfg = store_config(sqlite_store)
    client = MlflowClient(cfg.tracking_uri)
    older = client.create_experiment("kinds")  # as versions before this one made it: no kind
    chosen = client.create_experiment("genai", tags={KIND_TAG: "genai_development"})
    assert open_store(cfg).experiment_id == older
    assert client.get_experiment(older).tags[KIND_TAG] == "custom_model_development"
    open_store(store_config(sqlite_store, "genai"))
    assert client.get_experiment(chosen).tags[KIND_TAG] == "genai_development"


def damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "header zeroed":
        data[:100] = bytes(100)
    else:  # pages overwritten in the middle: a header that still says SQLite
        middle = len(data) // 2
        data[middle : middle + 8192] = b"\xa5" * 8192
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "header zeroed", "pages overwritten"])
def test_a_damaged_sqlite_store_is_one_line_naming_the_file_and_the_fix_and_left_untouched(sqlite_store, how):
    database = Path(sqlite_store.removeprefix("sqlite:///"))
    MlflowClient(sqlite_store).create_experiment("earlier work")  # a store with something in it
    damage(database, how)
    before = database.read_bytes()
    with pytest.raises(TrackingError) as refused:
        open_store(store_config(sqlite_store))
    message = str(refused.value)
    assert message.startswith(f"{database} is not a readable MLflow store (") and "\n" not in message
    assert any(w in message for w in ("malformed", "not a database")), message
    assert message.endswith(f"restore it from a backup, or move it aside (mv {database} {database}.damaged)"
                            " to start a new, empty store there")  # fmt: skip
    assert database.read_bytes() == before
    assert sorted(p.name for p in database.parent.iterdir()) == ["mlflow.db"]  # no lock, journal or mlruns


def test_the_check_passes_a_sound_store_that_another_process_is_writing(sqlite_store):
    import sqlite3

    MlflowClient(sqlite_store).create_experiment("earlier work")
    writer = sqlite3.connect(sqlite_store.removeprefix("sqlite:///"))
    writer.execute("BEGIN IMMEDIATE")  # mid-write (a reserved lock), as a running training may be
    try:
        check_sqlite_file(sqlite_store)  # reads, does not fail, and does not wait for the writer
    finally:
        writer.rollback()
        writer.close()
