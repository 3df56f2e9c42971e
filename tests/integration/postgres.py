"""A throwaway PostgreSQL server: initdb + pg_ctl from the machine's PostgreSQL (15 here and in CI,
where .ci/run installs Debian's postgresql), on 127.0.0.1 with a password, as a non-root user
(PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..conftest import free_port

USER, PASSWORD = "search", "s3cret-pw"


def bindir() -> Path:
    """Where initdb and pg_ctl are: `pg_config --bindir`, else Debian's /usr/lib/postgresql/<v>/bin."""
    if shutil.which("pg_config"):
        found = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip())
        if (found / "initdb").exists():
            return found
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not versions:
        raise RuntimeError("no PostgreSQL server here: install Debian's postgresql (.ci/run does)")
    return Path(versions[-1]).parent


def as_server_user(command: list[str]) -> list[str]:
    """Run as `postgres` when this is root (Debian's package creates that user)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class Postgres:
    data: Path
    port: int
    log: Path

    def url(self, database: str = "optuna", password: str = PASSWORD) -> str:
        return f"postgresql+psycopg2://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def ctl(self, *args: str) -> None:
        bin_ = bindir()
        subprocess.run(as_server_user([str(bin_ / "pg_ctl"), "-D", str(self.data), *args]), check=True,
                       capture_output=True)  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.ctl("-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "-w", "stop")

    def connect(self, database: str = "postgres"):
        """A psycopg2 connection to `database`, as the servers under test connect."""
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD,
                                dbname=database)  # fmt: skip

    def create_database(self, name: str) -> None:
        connection = self.connect()
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()


def start_postgres(base: Path) -> Postgres:
    base.mkdir(parents=True, exist_ok=True)
    password = base / "pw"
    password.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(password, "postgres")
    server = Postgres(base / "data", free_port(), base / "server.log")
    subprocess.run(as_server_user([str(bindir() / "initdb"), "-D", str(server.data), "-U", USER,
                                   "-A", "scram-sha-256", f"--pwfile={password}", "-E", "UTF8"]),
                   check=True, capture_output=True)  # fmt: skip
    server.start()
    return server
