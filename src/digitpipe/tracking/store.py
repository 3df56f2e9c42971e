"""The MLflow store: where it is (decided once per stage), whether it answers, and getting it ready."""

from __future__ import annotations

import contextlib
import functools
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from digitpipe.environment import MLFLOW_HTTP, MLFLOW_TRACKING_URI
from digitpipe.errors import ConfigError, TrackingError
from digitpipe.paths import project_root
from digitpipe.tracking import access

T = TypeVar("T")

TRACKING_ENV = MLFLOW_TRACKING_URI


def tracking_uri(configured: str | None, env: Mapping[str, str] = os.environ) -> str:
    """Config value, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the project root."""
    uri = configured or env.get(TRACKING_ENV)
    return uri or f"sqlite:///{project_root() / 'mlflow.db'}"


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def artifact_location(uri: str) -> str | None:
    """Local stores keep artifacts beside mlflow.db (not under whatever cwd created the experiment)."""
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        return (project_root() / "mlruns").as_uri()
    return None  # a tracking server decides


def limit_http_retries(http: Mapping[str, Any]) -> None:
    """Bound MLflow's HTTP retries, which by default (7 retries, exponential backoff, 120 s timeouts)
    make a dead tracking server minutes of silence. MLflow's client reads these variables at request
    time, and only there (a training puts them back when it ends: environment.restored)."""
    for key, variable in MLFLOW_HTTP.items():
        os.environ[variable] = str(http[key])


@contextlib.contextmanager
def store_failures(uri: str, doing: str, note: str = "") -> Iterator[None]:
    """Turn a failing MLflow store (after MLflow's bounded retries) into one line saying what failed."""
    import requests
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, requests.RequestException, OSError) as err:
        reason = " ".join(str(err).split())[:200]
        failure = TrackingError(f"MLflow store {uri} failed while {doing} ({reason}){note}")
        # a local file that could not be written (a full or read-only artifact disk): the store
        # itself still answers, so the run can be marked FAILED with the reason
        failure.store_answers = isinstance(err, OSError) and not isinstance(err, requests.RequestException)
        raise failure from err


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds with one line when a tracking server is down or is not an MLflow server."""
    if not is_server(uri):
        return
    local = f"unset {TRACKING_ENV} to log to sqlite:///mlflow.db in the project root"
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
            body = response.read(64).decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            return  # an MLflow server behind authentication: the client sends the credentials
        body = f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, or {local}"
        ) from err
    if body != "OK":  # MLflow's /health answers exactly "OK"
        raise ConfigError(
            f"{uri} answers but is not an MLflow tracking server (GET /health gave {body[:40]!r}); "
            f"check the URL, or {local}"
        )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// store, else None."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return Path(database).resolve() if database else None


def check_sqlite_file(uri: str) -> None:
    """A damaged sqlite store (truncated, its header overwritten) is one line naming the file and
    the fix, before MLflow opens it (its error is a long traceback that names neither). Read-only:
    the file is left as it is, and no store is made in its place."""
    database = sqlite_path(uri)
    if database is None or not database.is_file() or database.stat().st_size == 0:
        return  # no store yet (or an empty file): MLflow makes one
    stat = database.stat()
    fault = sqlite_fault(str(database), stat.st_mtime_ns, stat.st_size)
    if fault:
        raise TrackingError(
            f"{database} is not a readable MLflow store ({fault}); restore it from a backup, or move "
            f"it aside (mv {database} {database}.damaged) to start a new, empty store there"
        )


@functools.lru_cache(maxsize=8)  # per file version: a search opens the store once per trial
def sqlite_fault(database: str, mtime_ns: int, size: int) -> str | None:
    """What is wrong with a sqlite file (SQLite's own words), else None."""
    import sqlite3
    import urllib.parse

    with open(database, "rb") as file:
        if file.read(16) != b"SQLite format 3\x00":
            return "file is not a database: its SQLite header is missing"
    try:
        uri = f"file:{urllib.parse.quote(database)}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as connection:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as err:
        if "locked" in str(err):
            return None  # busy, not damaged: MLflow waits for it in its own way
        return str(err)
    return None if problems == ["ok"] else f"database disk image is malformed: {'; '.join(problems)}"


def store_lock(uri: str) -> AbstractContextManager:
    """A lock beside a sqlite store: MLflow creates and migrates its tables on first use, and two
    processes doing that at once fail (`duplicate column name`)."""
    database = sqlite_path(uri)
    if database is None:
        return nullcontext()
    database.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{database}.lock")


@dataclass(frozen=True)
class Store:
    """A ready MLflow store and the project's experiment in it."""

    uri: str
    experiment_id: str

    @functools.cached_property
    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.uri)


# MLflow 3 records what an experiment is for: model training here, not GenAI. (3.17's UI picks its
# pages by its own GenAI / Model training switch; docs/mlflow.md gives the link.) A kind set later is kept
KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"


def open_store(mlflow_cfg: Mapping[str, Any]) -> Store:
    """Reachable, logged in with leave to log, tables created and migrated once, the experiment
    there: ready for concurrent runs."""
    from mlflow import MlflowClient

    uri = tracking_uri(mlflow_cfg["tracking_uri"])
    access.check_uri_has_no_password(uri)
    limit_http_retries(mlflow_cfg["http"])
    check_reachable(uri)
    check_sqlite_file(uri)
    name = mlflow_cfg["experiment_name"]
    with store_lock(uri):
        client = MlflowClient(uri)
        experiment = logged_in(uri, lambda: client.get_experiment_by_name(name))  # creates/migrates tables
        client.search_registered_models(max_results=1)  # ... and the model registry's
        if experiment is None:
            experiment = client.get_experiment(_create_experiment(client, name, artifact_location(uri)))
        elif experiment.lifecycle_stage == "deleted":
            raise ConfigError(
                f"MLflow experiment {name!r} is deleted in {uri}; restore it "
                f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) "
                "or choose another mlflow.experiment_name"
            )
        elif KIND_TAG not in experiment.tags:  # made by an older version, or outside the project
            client.set_experiment_tag(experiment.experiment_id, KIND_TAG, TRAINING_KIND)
    if is_server(uri):  # users and permissions: only a tracking server has them
        access.check_can_log(client, uri, experiment)
        if model_name := mlflow_cfg.get("registered_model_name"):
            access.check_can_register(client, uri, model_name)
        note_local_history(uri)
    return Store(uri, experiment.experiment_id)


@functools.cache  # once per process (a search opens the store per trial)
def note_local_history(uri: str) -> None:
    """The project's own store is not copied to a tracking server (docs/team.md): say so once."""
    local = project_root() / "mlflow.db"
    if local.exists():
        print(f"note: logging to {uri}; this project's earlier runs stay in sqlite:///{local} "
              "(a tracking server starts empty: docs/team.md)", flush=True)  # fmt: skip


def logged_in(uri: str, first_request: Callable[[], T]) -> T:
    """The first request to a store; a server that refuses the login says so in one line."""
    from mlflow.exceptions import MlflowException

    try:
        return first_request()
    except MlflowException as err:
        if (line := access.login_error(uri, err)) is not None:
            raise line from err
        raise


def _create_experiment(client, name: str, location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name, location, tags={KIND_TAG: TRAINING_KIND})
    except MlflowException:  # created meanwhile by another process on a tracking server
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id
