"""Who this client is on a tracking server with users (`mlflow server --app-name basic-auth`), and
whether it may log there: one line and exit 2 before any work, never a traceback after a training.

The credentials come from MLflow's own MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, which
MLflow's client sends with every request; nothing here logs, tags or stores them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from digitpipe.errors import ConfigError

USERNAME, PASSWORD = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"
GRANT = "ask the server's admin to grant it (docs/team.md)"


def check_uri_has_no_password(uri: str) -> None:
    """A password in the URI would be recorded with the run's config; MLflow reads it from the
    environment instead."""
    if urlsplit(uri).password:
        raise ConfigError(
            f"the tracking URI holds a password; remove it from the URI and set {USERNAME} and "
            f"{PASSWORD} instead (they are never recorded)"
        )


def user(env: Mapping[str, str] = os.environ) -> str | None:
    return env.get(USERNAME) or None


def login_error(uri: str, err) -> ConfigError | None:
    """The one line for a server that refused this client's login, or None for any other failure."""
    if getattr(err, "error_code", None) != "UNAUTHENTICATED":
        return None
    if (name := user()) is None:
        return ConfigError(f"MLflow server {uri} asks for a login; set {USERNAME} and {PASSWORD}")
    return ConfigError(
        f"MLflow server {uri} refused the login of {name!r} (an unknown user or a wrong password); "
        f"check {USERNAME} and {PASSWORD}"
    )


def is_denied(err) -> bool:
    return getattr(err, "error_code", None) == "PERMISSION_DENIED"


def permission(uri: str, resource_type: str, resource_id: str) -> str | None:
    """This user's permission on a resource (READ, EDIT, ...), where the server is MLflow's
    basic-auth app, else None."""
    if (name := user()) is None:
        return None
    try:
        from mlflow.server.auth.client import AuthServiceClient

        return AuthServiceClient(uri).get_user_permission(name, resource_type, resource_id).permission
    except Exception:  # another auth app, or an old server: the caller says less
        return None


def denied(uri: str, what: str, resource_type: str, resource_id: str, needs: str) -> ConfigError:
    has = permission(uri, resource_type, resource_id)
    who = repr(user() or "this client")
    held = f"has {has} permission on" if has else "may not write to"
    return ConfigError(f"user {who} {held} {what} at {uri}; {needs} needs EDIT: {GRANT}")


def check_can_log(client, uri: str, experiment) -> None:
    """A write the experiment already holds (its kind tag, rewritten as it is), made only to learn
    whether this user may log runs there before training starts."""
    from mlflow.exceptions import MlflowException

    from digitpipe.tracking.store import KIND_TAG, TRAINING_KIND

    try:
        kind = experiment.tags.get(KIND_TAG, TRAINING_KIND)
        client.set_experiment_tag(experiment.experiment_id, KIND_TAG, kind)
    except MlflowException as err:
        if is_denied(err):
            raise denied(uri, f"experiment {experiment.name!r}", "experiment", experiment.experiment_id,
                         "logging runs") from err  # fmt: skip
        raise


def check_can_register(client, uri: str, model_name: str) -> None:
    """Registering a version and moving @champion need EDIT on the registered model, once it exists
    (whoever creates it manages it)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model_name)
    except MlflowException:
        return  # not there yet (or not readable: registering it will say so)
    has = permission(uri, "registered_model", model_name)
    if has is None:
        return
    from mlflow.server.auth.permissions import get_permission

    if not get_permission(has).can_update:
        raise denied(uri, f"registered model {model_name!r}", "registered_model", model_name,
                     "registering its versions")  # fmt: skip
