"""The model registry's `@champion` alias: it moves to a version only when that version's test
accuracy beats the current champion's. Every registered version is a candidate until then.

A version's `status` tag says where it stands: candidate, evaluating (its claim while evaluate
decides), champion, former champion. To put an older version back by hand, move the alias and set
the demoted version's status to anything but champion (docs/team.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digitpipe.metric_names import TEST_ACC

if TYPE_CHECKING:
    from mlflow import MlflowClient

CANDIDATE, CHAMPION, EVALUATING = "candidate", "champion", "evaluating"
MAX_SETTLE_ROUNDS = 20
STATUS_TAG, ACCURACY_TAG = "status", TEST_ACC


def run_version(client: MlflowClient, model_name: str, run_id: str):
    """The newest version of `model_name` registered from `run_id`, or None."""
    versions = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    return max(versions, key=lambda v: int(v.version), default=None)


def champion_version(client: MlflowClient, model_name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:  # no alias yet (or no such model)
        return None


def version_accuracy(client: MlflowClient, version) -> float:
    """A version's test accuracy: its tag, else its run's test/acc (a champion chosen by hand)."""
    if ACCURACY_TAG in version.tags:
        return float(version.tags[ACCURACY_TAG])
    return client.get_run(version.run_id).data.metrics.get(TEST_ACC, float("-inf"))


def claims(client: MlflowClient, model_name: str) -> list:
    """The versions with a claim on @champion: those being evaluated and those that took it."""
    versions = client.search_model_versions(f"name = '{model_name}'", max_results=10_000)
    return [v for v in versions if v.tags.get(STATUS_TAG) in (EVALUATING, CHAMPION)]


def settle_champion(client: MlflowClient, model_name: str) -> tuple:
    """Point @champion at the best of the current champion and every claiming version, and keep at it
    until a fresh read agrees: returns (the champion, the version it replaced or None).

    Safe with other evaluate stages settling at the same moment on one tracking server, which has no
    compare-and-set: each writes its claim (status: evaluating, with its accuracy) before it reads, so
    whoever moves the alias last reads every claim after its move, and moves it again if it is not
    the best. Ties keep the champion; a champion chosen by hand is judged by its run's test/acc.

    The server sets an alias by a read, then an insert if the alias is new: two stages setting a new
    @champion at the same moment collide on its key, and the loser's set fails (BAD_REQUEST). That
    loser reads again, as after any move, instead of failing the stage.
    """
    from mlflow.exceptions import MlflowException

    replaced = None
    for _ in range(MAX_SETTLE_ROUNDS):
        holder = champion_version(client, model_name)
        contenders = claims(client, model_name)
        if holder is not None:
            contenders = [holder, *(v for v in contenders if str(v.version) != str(holder.version))]
        best = max(contenders, key=lambda v: version_accuracy(client, v))  # max: the first of equals
        if holder is not None and str(best.version) == str(holder.version):
            return holder, replaced
        try:
            client.set_registered_model_alias(model_name, CHAMPION, best.version)
        except MlflowException:
            if holder is not None or champion_version(client, model_name) is None:
                raise  # not the collision of two first sets: a real failure
            continue  # another stage set the first @champion meanwhile: judge it in the next round
        if holder is not None and replaced is None:
            replaced = holder
    raise RuntimeError(f"@{CHAMPION} of {model_name} did not settle in {MAX_SETTLE_ROUNDS} rounds")


def promote_if_better(client: MlflowClient, model_name: str, run_id: str, test_acc: float) -> str | None:
    """Record the run's version's test accuracy and move @champion to it if it beats the champion's.

    Returns one line saying what happened, or None when the run registered no version.
    """
    version = run_version(client, model_name, run_id)
    if version is None:
        return None
    mine = str(version.version)
    client.set_model_version_tag(model_name, mine, ACCURACY_TAG, str(test_acc))
    client.set_model_version_tag(model_name, mine, STATUS_TAG, EVALUATING)  # the claim, before reading
    champion, replaced = settle_champion(client, model_name)
    this = f"{model_name} version {mine} (test acc {test_acc:.4f})"
    if str(champion.version) != mine:
        client.set_model_version_tag(model_name, mine, STATUS_TAG, CANDIDATE)
        best = version_accuracy(client, champion)
        return f"{this} stays a candidate: @{CHAMPION} is version {champion.version} ({best:.4f})"
    client.set_model_version_tag(model_name, mine, STATUS_TAG, CHAMPION)
    if replaced is None or str(replaced.version) == mine:
        return f"{this} is now models:/{model_name}@{CHAMPION}"
    client.set_model_version_tag(model_name, replaced.version, STATUS_TAG, "former champion")
    best = version_accuracy(client, replaced)
    return f"{this} is now models:/{model_name}@{CHAMPION}, replacing version {replaced.version} ({best:.4f})"
