"""docs/team.md's server, for real: `mlflow server` on PostgreSQL with basic auth, its artifacts
proxied to an S3 bucket (moto's standalone S3 server, which runs offline), on 127.0.0.1.

Users: admin (from the environment, as the recipe says), alice and bob (EDIT on the project's
experiment and registered model), reader (the server's default: READ).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..conftest import free_port, user_env
from .postgres import Postgres

EXPERIMENT, MODEL, BUCKET = "mnist-convnet", "mnist-convnet", "mlflow-artifacts"
ADMIN_PASSWORD = "adm1n-Team-pw"
PASSWORDS = {"alice": "alice-Team-pw1", "bob": "bob-Team-pw22", "reader": "reader-Team-pw3"}
KEY_ID, SECRET = "team-key", "team-secret"  # the server's S3 keys (moto takes any)
S3_KEYS = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}
BIN = Path(sys.executable).parent


def s3_client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )


def wait_for_url(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # answering
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the server exited: {log.read_text()[-3000:]}") from None
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout} s: {log.read_text()[-3000:]}")


def start(command: list[str], env: dict, log: Path, health: str) -> subprocess.Popen:
    """A server in a process group of its own (its workers stop with it)."""
    with log.open("w") as out:
        process = subprocess.Popen(command, env=user_env(env), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    wait_for_url(health, process, log)
    return process


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class TeamServer:
    base: Path
    database: Postgres
    url: str
    s3: str
    processes: list = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def env(self, user: str | None = "alice", password: str | None = None) -> dict[str, str]:
        """A client's environment: the server's URL and one user's login, nothing about storage."""
        env = {"MLFLOW_TRACKING_URI": self.url}
        if user is not None:
            env |= {"MLFLOW_TRACKING_USERNAME": user,
                    "MLFLOW_TRACKING_PASSWORD": password or PASSWORDS.get(user, ADMIN_PASSWORD)}  # fmt: skip
        return env

    def client(self, user: str = "admin"):
        """An MlflowClient as `user` (MLflow reads the login from the environment per request)."""
        from mlflow import MlflowClient

        login = self.env(user)
        del login["MLFLOW_TRACKING_URI"]  # given to the client: in os.environ it would outlive a
        os.environ.update(login)  # module's fixture (the autouse restore runs per test) and send
        return MlflowClient(self.url)  # a later in-process train() to a stopped server

    def bucket_keys(self) -> list[str]:
        s3 = s3_client(self.s3)
        keys, token = [], {}
        while True:
            page = s3.list_objects_v2(Bucket=BUCKET, **token)
            keys += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return keys
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop(process)
        for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(variable, None)


def server_command(database_url: str, port: int) -> list[str]:
    """docs/team.md's command, with the test's database and port."""
    return [str(BIN / "mlflow"), "server", "--backend-store-uri", database_url,
            "--artifacts-destination", f"s3://{BUCKET}", "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--app-name", "basic-auth",
            "--allowed-hosts", f"127.0.0.1:{port},localhost:{port}",
            "--cors-allowed-origins", f"http://127.0.0.1:{port}"]  # fmt: skip


def start_team_server(base: Path, postgres: Postgres, name: str = "team") -> TeamServer:
    """The server, its S3 bucket and its users; stop() stops the servers (the database is the caller's)."""
    base.mkdir(parents=True, exist_ok=True)
    postgres.create_database(f"{name}_runs")
    postgres.create_database(f"{name}_users")
    s3_port, port = free_port(), free_port()
    s3 = f"http://127.0.0.1:{s3_port}"
    team = TeamServer(base, postgres, f"http://127.0.0.1:{port}", s3)
    team.processes.append(start([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], S3_KEYS,
                                base / "s3.log", f"{s3}/"))  # fmt: skip
    s3_client(s3).create_bucket(Bucket=BUCKET)
    auth = base / "basic_auth.ini"  # docs/team.md's file, with the test's database
    auth.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {postgres.url(f'{name}_users')}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {**S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": s3, "MLFLOW_AUTH_CONFIG_PATH": str(auth),
           "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "team-csrf-key-0123456789"}  # fmt: skip
    try:
        command = server_command(postgres.url(f"{name}_runs"), port)
        team.processes.append(start(command, env, base / "server.log", f"{team.url}/health"))
        add_users(team)
    except BaseException:
        team.stop()
        raise
    return team


def add_users(team: TeamServer) -> None:
    """As docs/team.md's admin does: the users, the experiment and registered model, EDIT for two."""
    from mlflow.server import get_app_client

    from digitpipe.tracking.store import KIND_TAG, TRAINING_KIND

    admin = team.client("admin")
    users = get_app_client("basic-auth", tracking_uri=team.url)
    for user, password in PASSWORDS.items():
        users.create_user(user, password)
    experiment = admin.create_experiment(EXPERIMENT, tags={KIND_TAG: TRAINING_KIND})
    admin.create_registered_model(MODEL)
    for user in ("alice", "bob"):
        users.grant_user_permission(user, "experiment", experiment, "EDIT")
        users.grant_user_permission(user, "registered_model", MODEL, "EDIT")
