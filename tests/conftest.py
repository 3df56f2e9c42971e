"""Shared fixtures: tiny generated MNIST-like data, composed configs, temp copies of the project."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from digitpipe.cli import VERSION_BASE
from digitpipe.data.idx import encode_idx
from digitpipe.environment import CPU_BF16 as CPU_BF16_ENV

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = (
    "conf", "src", "dvc.yaml", "params.yaml", "pyproject.toml", ".dvc/config", ".dvc/plots.html", ".dvcignore"
)  # fmt: skip
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-bf16", choices=("probe", "0", "1"), default="probe",
        help="what trainer.precision=auto takes this CPU to have: bf16 units (1), none (0), or what "
        "torch's CPUID probes find (probe): run the suite as on either kind of CPU",
    )  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    told = config.getoption("--cpu-bf16")
    if told != "probe":
        os.environ[CPU_BF16_ENV] = told  # inherited by every CLI and DDP rank the tests start


@pytest.fixture(autouse=True)
def process_environment():
    """What a test changes of os.environ, or of MLflow's process-wide tracking URI (which
    mlflow.set_tracking_uri sets, with the variable), is put back for the next test in the worker."""
    import mlflow

    environ, uri_set, uri = dict(os.environ), mlflow.is_tracking_uri_set(), mlflow.get_tracking_uri()
    yield
    if (mlflow.is_tracking_uri_set(), mlflow.get_tracking_uri()) != (uri_set, uri):
        mlflow.set_tracking_uri(uri if uri_set else None)
    os.environ.clear()
    os.environ.update(environ)


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 28x28 images whose class is a bright 6x6 block at a class-specific place: learnable."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n, dtype=torch.uint8) % 10
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        row, col = 2 + (label // 5) * 12, 2 + (label % 5) * 5
        images[i, row : row + 6, col : col + 6] = 255
    return images, labels


def tiny_raw_files(n_train: int = 600, n_test: int = 200) -> dict[str, bytes]:
    """Decompressed IDX content keyed like conf/data/mnist.yaml's files."""
    train_x, train_y = synthetic_digits(n_train, seed=1)
    test_x, test_y = synthetic_digits(n_test, seed=2)
    tensors = {"train_images": train_x, "train_labels": train_y, "test_images": test_x, "test_labels": test_y}
    return {key: encode_idx(t) for key, t in tensors.items()}


def files_config(raw: dict[str, bytes]) -> dict[str, dict[str, str]]:
    return {k: {"name": FILE_NAMES[k], "sha256": hashlib.sha256(v).hexdigest()} for k, v in raw.items()}


def write_mirror(directory: Path, raw: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, content in raw.items():
        (directory / f"{FILE_NAMES[key]}.gz").write_bytes(gzip.compress(content))
    return directory


@pytest.fixture(scope="session")
def tiny_raw() -> dict[str, bytes]:
    return tiny_raw_files()


@pytest.fixture
def tiny_mirror(tmp_path: Path, tiny_raw: dict[str, bytes]) -> Path:
    return write_mirror(tmp_path / "mirror", tiny_raw)


@pytest.fixture(scope="session")
def _migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty sqlite MLflow store with MLflow's schema migrations done (seconds, so done once)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def sqlite_store(tmp_path: Path, _migrated_store: Path) -> str:
    """The URI of a fresh, empty sqlite MLflow store in tmp_path (tmp_path/mlflow.db)."""
    shutil.copyfile(_migrated_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def compose_config(
    overrides: list[str] | None = None, config_dir: Path = ROOT / "conf", config_name: str = "config"
) -> DictConfig:
    with initialize_config_dir(str(config_dir), version_base=VERSION_BASE):
        return compose(config_name, overrides=overrides or [])


# The one shrunk config every test trains with, on the generated files (Tiny): two short epochs
TINY = {
    "data.val_size": 100, "data.batch_size": 32, "data.eval_batch_size": 100,
    "trainer.max_epochs": 2, "trainer.log_every_n_steps": 5,
}  # fmt: skip


@dataclass(frozen=True)
class Tiny:
    """TINY on the generated raw files `raw`: as overrides (a composed config, a command line), or
    written into a project copy's conf/ (conf/tiny.yaml, last in the defaults) for what DVC composes."""

    raw: dict[str, bytes]

    def settings(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        checksums = {f"data.files.{k}.sha256": v["sha256"] for k, v in files_config(self.raw).items()}
        return {**checksums, **TINY, **(extra or {})}

    def overrides(self, extra: dict[str, Any] | None = None) -> list[str]:
        return [f"{key}={value}" for key, value in self.settings(extra).items()]

    def shrink(self, project: Path, extra: dict[str, Any] | None = None) -> None:
        """Write the settings (and `extra` ones) into `project`'s conf/, then compose params.yaml as
        `dvc exp run` does: the knobs among them into conf/tiny_knobs.yaml (last in the knobs, so
        params.yaml holds them), the others into conf/tiny.yaml (last in conf/config.yaml)."""
        from dvc.utils.hydra import compose_and_dump
        from omegaconf import OmegaConf

        from digitpipe.tracking.metadata import flatten_config

        conf = project / "conf"
        knobs = flatten_config(compose_config(config_dir=conf, config_name="dvc_params"))
        nested: dict[str, dict] = {"knobs": {}, "other": {}}
        for key, value in self.settings(extra).items():
            *parents, leaf = key.split(".")
            node = nested["knobs" if key in knobs else "other"]
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        for name, values, defaults, after in (
            ("tiny_knobs", nested["knobs"], conf / "knobs" / "default.yaml", "  - /experiment:"),
            ("tiny", nested["other"], conf / "config.yaml", "  - knobs:"),
        ):
            values = OmegaConf.to_container(OmegaConf.create(values))
            (conf / f"{name}.yaml").write_text("# @package _global_\n" + yaml.safe_dump(values))
            text = defaults.read_text()
            line = next(line for line in text.splitlines() if line.startswith(after))
            defaults.write_text(text.replace(line, f"{line}\n  - /{name}"))
        compose_and_dump(str(project / "params.yaml"), str(conf), None, "dvc_params", str(project), [])
        if (project / ".git").is_dir():
            git(project, "add", "conf")  # a file git does not track is left out of DVC's experiments


@pytest.fixture(scope="session")
def tiny(tiny_raw: dict[str, bytes]) -> Tiny:
    return Tiny(tiny_raw)


def copy_project(dest: Path) -> Path:
    """A fresh git+DVC workspace holding this project's code and config (no data, no runs)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, target)
    (dest / ".gitignore").write_text("outputs/\nmultirun/\nmlflow.db\nmlruns/\n")
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "project copy")
    return dest


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def user_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a user in this virtual environment (its bin/ first on PATH, so `python`,
    `dvc`, `uvicorn` are this install's), without the outer MNIST_MIRROR and MLflow server and login."""
    outer = ("MNIST_MIRROR", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    base = {k: v for k, v in os.environ.items() if k not in outer}
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    return {**base, **(env or {})}


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    """Run a command as a user would (python resolves to this interpreter), capturing output."""
    return subprocess.run(args, cwd=cwd, env=user_env(env), capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
