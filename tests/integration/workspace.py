"""A project copy to run the real CLI in, on the tiny data: what the fault tests share."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from ..conftest import ROOT, Tiny, copy_project, run_cli, write_mirror

EPOCHS = 3


@dataclass
class Workspace:
    project: Path
    mirror: Path
    raw: dict

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(f"sqlite:///{self.project / 'mlflow.db'}")

    def runs(self):
        experiment = self.client.get_experiment_by_name("mnist-convnet")
        return self.client.search_runs([experiment.experiment_id]) if experiment else []

    def command(self, *extra: str, signal: str | None = None, at: tuple[int, int] = (1, 3)) -> list[str]:
        """`python src/train.py` on tiny data; with `signal`, a real signal to itself at (epoch, batch),
        once: a rerun of the very same command (what a resume requires) runs through."""
        args = [
            "python",
            "src/train.py",
            *Tiny(self.raw).overrides(),
            f"trainer.max_epochs={EPOCHS}",
        ]
        args += ["callbacks.progress_bar.refresh_rate=0", "mlflow.log_model=false", *extra]
        if signal:
            args += ["+callbacks.kill._target_=tests.support.SignalOnce", f"+callbacks.kill.signal={signal}",
                     f"+callbacks.kill.epoch={at[0]}", f"+callbacks.kill.batch={at[1]}",
                     f"+callbacks.kill.marker={self.project.parent / f'signalled-{signal}'}"]  # fmt: skip
        return args

    def env(self) -> dict[str, str]:
        return {"MNIST_MIRROR": str(self.mirror), "PYTHONPATH": str(ROOT)}

    def train(self, *extra: str, **kwargs) -> subprocess.CompletedProcess:
        return run_cli(self.command(*extra, **kwargs), cwd=self.project, env=self.env())

    def evaluate(self) -> subprocess.CompletedProcess:
        args = ["python", "src/evaluate.py", *Tiny(self.raw).overrides()]
        return run_cli(args, cwd=self.project, env=self.env())

    def md5s(self) -> dict[str, str]:
        files = [p for d in ("models", "reports") for p in sorted((self.project / d).glob("*"))]
        return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in files}


def new_workspace(base: Path, raw: dict) -> Workspace:
    return Workspace(copy_project(base / "project"), write_mirror(base / "mirror", raw), raw)


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = client.get_run(run_id).data.metrics
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}
