"""Start and stop the real servers the tests use (`mlflow server`, `mlflow models serve`, `mlflow ui`)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..conftest import user_env


def start(command: list[str], url: str, cwd: Path, env: dict | None = None, timeout: float = 90):
    """Start a server and wait until `url` answers."""
    process = subprocess.Popen(command, cwd=cwd, env=user_env(env),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read()[-3000:]) from None
            time.sleep(0.5)
    process.kill()
    raise TimeoutError(f"{command[0]} did not answer at {url}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def start_server(root: Path, port: int) -> subprocess.Popen:
    """`mlflow server` in a process group of its own (its workers die with it), pgid in root/pgid."""
    mlflow = str(Path(sys.executable).parent / "mlflow")
    command = [mlflow, "server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
               "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]  # fmt: skip
    process = subprocess.Popen(command, cwd=root, env=user_env(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    (root / "pgid").write_text(str(process.pid))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return process
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("mlflow server did not start")
