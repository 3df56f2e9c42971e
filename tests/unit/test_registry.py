"""@champion moves only to a version whose test accuracy beats the champion's; the rest stay candidates."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from digitpipe.tracking.model import register
from digitpipe.tracking.registry import CHAMPION, promote_if_better
from digitpipe.tracking.run import TrackedRun
from digitpipe.tracking.store import Store

MODEL = "mnist-convnet"


@pytest.fixture
def registry(sqlite_store, tmp_path):
    """A real sqlite store; register() adds a version of a new run's model, as a training does."""
    client = MlflowClient(sqlite_store)
    experiment = client.create_experiment("registry", (tmp_path / "mlruns").as_uri())
    client.create_registered_model(MODEL)

    def register_run() -> str:
        run = TrackedRun(Store(sqlite_store, experiment), client.create_run(experiment).info.run_id)
        logged = client.create_logged_model(experiment, source_run_id=run.run_id)
        register(run, f"models:/{logged.model_id}", MODEL)
        return run.run_id

    return client, register_run


def champion(client) -> tuple[str, str]:
    version = client.get_model_version_by_alias(MODEL, CHAMPION)
    return str(version.version), version.tags["test/acc"]


def status(client, version: str) -> str:
    return client.get_model_version(MODEL, version).tags["status"]


def test_the_first_evaluated_version_becomes_the_champion(registry):
    client, register = registry
    run = register()
    assert status(client, "1") == "candidate"
    line = promote_if_better(client, MODEL, run, 0.9908)
    assert line == f"{MODEL} version 1 (test acc 0.9908) is now models:/{MODEL}@champion"
    assert champion(client) == ("1", "0.9908") and status(client, "1") == "champion"


def test_a_worse_version_stays_a_candidate_and_a_better_one_takes_over(registry):
    client, register = registry
    first, worse, better = register(), register(), register()
    promote_if_better(client, MODEL, first, 0.9908)
    line = promote_if_better(client, MODEL, worse, 0.93)  # e.g. a 1-epoch sigmoid experiment
    assert line == f"{MODEL} version 2 (test acc 0.9300) stays a candidate: @champion is version 1 (0.9908)"
    assert champion(client) == ("1", "0.9908") and status(client, "2") == "candidate"
    assert promote_if_better(client, MODEL, better, 0.9921).endswith("replacing version 1 (0.9908)")
    assert champion(client) == ("3", "0.9921")
    assert (status(client, "1"), status(client, "3")) == ("former champion", "champion")
    assert promote_if_better(client, MODEL, first, 0.9908).endswith("@champion is version 3 (0.9921)")


def test_a_tie_does_not_move_the_champion_and_reevaluating_the_champion_keeps_it(registry):
    client, register = registry
    first, second = register(), register()
    promote_if_better(client, MODEL, first, 0.99)
    assert "stays a candidate" in promote_if_better(client, MODEL, second, 0.99)
    assert promote_if_better(client, MODEL, first, 0.985).endswith("is now models:/mnist-convnet@champion")
    assert champion(client) == ("1", "0.985")


def test_a_champion_chosen_by_hand_is_judged_by_its_runs_test_accuracy(registry):
    client, register = registry
    mine, theirs = register(), register()
    client.log_metric(mine, "test/acc", 0.995)
    client.set_registered_model_alias(MODEL, CHAMPION, "1")  # set in the UI: no test/acc tag
    assert "stays a candidate" in promote_if_better(client, MODEL, theirs, 0.991)


def test_a_run_is_registered_once_however_often_its_publishing_is_retried(registry, sqlite_store):
    client, register_run = registry
    run_id = register_run()
    run = TrackedRun(Store(sqlite_store, client.get_run(run_id).info.experiment_id), run_id)
    logged = client.create_logged_model(run.store.experiment_id, source_run_id=run_id)
    register(run, f"models:/{logged.model_id}", MODEL)  # a rerun after a failure past registration
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [(str(v.version), v.run_id, v.tags["status"]) for v in versions] == [("1", run_id, "candidate")]


def test_a_run_that_registered_nothing_changes_nothing(registry):
    client, _ = registry
    run = client.create_run(client.get_experiment_by_name("registry").experiment_id).info.run_id
    assert promote_if_better(client, MODEL, run, 0.99) is None
    with pytest.raises(Exception, match="alias"):
        client.get_model_version_by_alias(MODEL, CHAMPION)


def test_a_claim_overtaken_by_a_concurrent_stale_move_is_honoured(registry):
    """Two evaluate stages at once: B read the champion before A's claim was written and moved the
    alias to itself after A had. B's re-read finds A's claim and gives the alias back to A."""
    from digitpipe.tracking.registry import EVALUATING, settle_champion

    client, register = registry
    old, _, b = register(), register(), register()
    promote_if_better(client, MODEL, old, 0.98)
    for version, acc, state in (("2", "0.99", EVALUATING), ("3", "0.985", CHAMPION)):
        client.set_model_version_tag(MODEL, version, "test/acc", acc)
        client.set_model_version_tag(MODEL, version, "status", state)
    client.set_registered_model_alias(MODEL, CHAMPION, "3")  # B's stale move, after A's
    holder, replaced = settle_champion(client, MODEL)
    assert (str(holder.version), str(replaced.version)) == ("2", "3")
    assert champion(client) == ("2", "0.99")
    assert promote_if_better(client, MODEL, b, 0.985).endswith("@champion is version 2 (0.9900)")
    assert status(client, "3") == "candidate"


def test_a_version_put_back_by_hand_stays_the_champion_when_the_demoted_one_is_marked(registry):
    client, register = registry
    first, second, third = register(), register(), register()
    promote_if_better(client, MODEL, first, 0.98)
    promote_if_better(client, MODEL, second, 0.99)
    client.set_registered_model_alias(MODEL, CHAMPION, "1")  # the documented roll-back:
    client.set_model_version_tag(MODEL, "2", "status", "rejected")  # ... and the demoted one marked
    assert "stays a candidate: @champion is version 1" in promote_if_better(client, MODEL, third, 0.975)
    assert champion(client) == ("1", "0.98")
