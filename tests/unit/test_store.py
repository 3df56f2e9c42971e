"""The project's MLflow store: the experiment is created with MLflow 3's kind for model training."""

from __future__ import annotations

from mlflow import MlflowClient

from digitpipe.tracking.store import KIND_TAG, open_store

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
