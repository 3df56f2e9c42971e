"""The activation study end to end on tiny data, through `dvc repro` (quick variant, a few cells)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import yaml
from mlflow import MlflowClient

from ..conftest import ROOT, copy_project, git, run_cli

pytestmark = pytest.mark.slow

STUDY = ROOT / "pipelines" / "activation_study"
TINY_STUDY = {
    "activations": ["relu", "sigmoid"],
    "seeds": [1],
    "epochs": 1,
    "precision": "32-true",
    "optimizer": "rmsprop",
    "lr": 0.001,
    "dying": {"activations": ["relu"], "lr": 0.01},
    "probe_size": 50,
    "quick": True,
    "quick_steps": 5,
}


def tiny_study_project(tmp_path, tiny):
    """A project copy on the tiny config, with the study at its tiny size."""
    project = copy_project(tmp_path / "project")
    tiny.shrink(project)
    return project, with_tiny_study(project)


def with_tiny_study(project):
    """The study at its tiny size added to `project`, everything committed."""
    study = project / "pipelines" / "activation_study"
    (study / ".dvc").mkdir(parents=True)  # a DVC project of its own
    for name in ("dvc.yaml", "cell.py", "aggregate.py", ".dvc/config", ".dvc/.gitignore"):
        shutil.copy2(STUDY / name, study / name)
    (study / "params.yaml").write_text(yaml.safe_dump({"study": TINY_STUDY}))
    git(project, "add", "-A", "--", ".", ":!.dvc")  # a copy has no .dvc/.gitignore for DVC's cache
    git(project, "commit", "-qm", "tiny study")
    return study


def test_the_quick_study_runs_every_cell_and_compares_them_in_a_table_and_a_parent_run(
    tmp_path, tiny, tiny_mirror
):
    project, study = tiny_study_project(tmp_path, tiny)
    env = {"MNIST_MIRROR": str(tiny_mirror)}
    done = run_cli(["dvc", "--cd", "pipelines/activation_study", "repro"], cwd=project, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cells = ["base-relu-s1", "base-sigmoid-s1", "dying-relu-s1"]
    for cell in cells:
        history = list(csv.DictReader((study / "cells" / cell / "history.csv").open()))
        assert len(history) == 1 and "diag/dead/conv1" in history[0]
        assert "test/acc" in json.loads((study / "cells" / cell / "metrics.json").read_text())
    assert not (project / "models").exists()  # the main pipeline's training did not run: only its data

    table = list(csv.DictReader((study / "reports" / "activation_study.csv").open()))
    assert [(r["arm"], r["activation"]) for r in table] == [
        ("base", "relu"),
        ("base", "sigmoid"),
        ("dying", "relu"),
    ]
    markdown = (study / "reports" / "activation_study.md").read_text()
    assert markdown.count("\n| base |") == 2 and markdown.count("\n| dying |") == 1
    for figure in ("accuracy_per_epoch.png", "early_grad_norm.png", "dead_units.png"):
        assert (study / "reports" / figure).read_bytes().startswith(b"\x89PNG")
    summary = json.loads((study / "reports" / "summary.json").read_text())
    assert set(summary) == {"base/relu", "base/sigmoid", "dying/relu"}
    test_acc = json.loads((study / "reports" / "test_acc.json").read_text())
    assert {k: v["test_acc"] for k, v in test_acc.items()} == {
        k: v["test_acc_mean"] for k, v in summary.items()
    }
    header = next(
        csv.reader(run_cli(["dvc", "exp", "show", "--csv"], cwd=project, env=env).stdout.splitlines())
    )
    assert not [c for c in header if "cells/" in c or "test_acc" in c]  # the study's numbers do not fill it
    shown = run_cli(["dvc", "metrics", "show", "--json", "reports/test_acc.json"], cwd=study, env=env)
    assert '"test_acc"' in shown.stdout  # named, they show (and diff)

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")  # the project's store, not the study's folder
    experiment = client.get_experiment_by_name("activation-study")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("digitpipe_study") == "activation_study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.info.run_name for r in children) == cells
    assert all("diag/grad_norm/conv1" in r.data.metrics and "test/acc" in r.data.metrics for r in children)
    assert {r.data.tags["device.precision"] for r in children} == {"32-true"}  # study.precision, on any CPU
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"activation_study.md", "dead_units.png"} <= artifacts

    again = run_cli(["dvc", "--cd", "pipelines/activation_study", "repro"], cwd=project, env=env)
    ran = [line for line in again.stdout.splitlines() if line.startswith("Running stage")]
    assert again.returncode == 0 and ran == ["Running stage 'main_data':"]  # it asks the main pipeline only
    forced = run_cli(["dvc", "repro", "-f", "-s", "aggregate"], cwd=study, env=env)
    assert forced.returncode == 0, forced.stderr[-2000:]
    runs = client.search_runs([experiment.experiment_id])
    assert len([r for r in runs if r.data.tags.get("digitpipe_study")]) == 1  # the same parent, updated


def test_the_quick_variant_in_dvcs_temporary_copy_reuses_the_data_offline_and_records_into_the_project(
    built_copy,
):
    """`dvc exp run --temp` runs the study in a clone of the repository under the study's
    .dvc/tmp/exps/: the main pipeline's data comes from the workspace's cache, offline, and the runs go
    to the project's store; removed once run (pipelines/README.md), it leaves the main table alone."""
    project, _ = built_copy  # `dvc repro` ran there: the data is in the workspace and the cache
    study = with_tiny_study(project)
    quick = ["dvc", "--cd", "pipelines/activation_study", "exp", "run", "--temp", "-n", "quick-study"]
    done = run_cli([*quick, "-S", "study.activations=[relu]"], cwd=project, timeout=900)  # no mirror
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Stage 'download' is cached - skipping run, checking out outputs" in done.stdout
    assert "Running stage 'download'" not in done.stdout  # was: downloaded again, offline an error
    assert not (study / "mlflow.db").exists()  # was: a store of its own, which `mlflow ui` never shows
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("activation-study").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["activation study", "base-relu-s1", "dying-relu-s1"]
    assert {r.data.tags["dvc.exp_name"] for r in runs} == {"quick-study"}

    def rows() -> list[str]:
        shown = run_cli(["dvc", "exp", "show", "--csv"], cwd=project).stdout.splitlines()
        return [row[0] for row in csv.reader(shown[1:])]

    assert rows() == ["", "", "quick-study"]  # DVC's: one repository, one list of experiments
    removed = run_cli(["dvc", "exp", "remove", "quick-study"], cwd=project)
    assert removed.returncode == 0 and rows() == ["", ""]  # the workspace and the commit alone
