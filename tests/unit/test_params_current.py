"""check_conf (write_stage_config): `dvc repro` runs params.yaml's knobs, an experiment's included,
and stops in one line only where conf/'s knobs changed since params.yaml was composed from them."""

from __future__ import annotations

import shutil

import pytest
import yaml

from digitpipe.cli import KNOBS_CONFIG, composed, differing_keys, option, write_stage_config
from digitpipe.errors import ConfigError

from ..conftest import ROOT


@pytest.fixture
def project(tmp_path, monkeypatch):
    """conf/ as committed and the params.yaml `dvc exp run` composes from it (not the workspace's,
    which may hold an experiment), in a temporary directory that is the working directory."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    compose_params(tmp_path)
    return tmp_path


def compose_params(project, *overrides: str) -> None:
    """What `dvc exp run -S ...` does before it runs the stages."""
    knobs = composed(project / "conf", KNOBS_CONFIG, list(overrides))
    (project / "params.yaml").write_text(yaml.safe_dump(knobs, sort_keys=False))


def experiment(project, monkeypatch, *overrides: str) -> None:
    """`dvc exp run -S ...`: params.yaml composed with them, then check_conf inside the experiment."""
    compose_params(project, *overrides)
    monkeypatch.setenv("DVC_EXP_NAME", "rapid-hump")
    write_stage_config(project)
    monkeypatch.delenv("DVC_EXP_NAME")


def stage_config(project) -> dict:
    return yaml.safe_load((project / "reports" / "stage_config.yaml").read_text())


def edit(path, old: str, new: str) -> None:
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))


def test_params_yaml_as_conf_composes_it_writes_the_stage_config(project):
    write_stage_config(project)
    assert stage_config(project)["model"]["activation"] == "relu"


def test_after_an_experiment_dvc_repro_runs_its_knobs(project, monkeypatch):
    experiment(project, monkeypatch, "optimizer=adam", "optimizer.lr=0.003")
    write_stage_config(project)  # `dvc repro` after it: no refusal, the experiment's values
    optimizer = stage_config(project)["optimizer"]
    assert optimizer["_target_"] == "torch.optim.Adam" and optimizer["lr"] == 0.003


def test_after_an_experiment_an_edit_that_is_not_a_knob_runs_with_the_experiments_knobs(project, monkeypatch):
    experiment(project, monkeypatch, "model.activation=tanh")
    edit(project / "conf" / "data" / "mnist.yaml", "eval_batch_size: 1000", "eval_batch_size: 500")
    write_stage_config(project)
    assert stage_config(project)["model"]["activation"] == "tanh"
    assert stage_config(project)["data"]["eval_batch_size"] == 500


def test_a_hand_edited_params_yaml_runs_as_dvc_does(project):
    write_stage_config(project)
    edit(project / "params.yaml", "max_epochs: 5", "max_epochs: 2")
    write_stage_config(project)
    assert stage_config(project)["trainer"]["max_epochs"] == 2


@pytest.mark.parametrize("after_an_experiment", [False, True])
def test_a_knob_edited_in_conf_without_recomposing_is_refused_naming_it_and_the_fix(
    project, monkeypatch, after_an_experiment
):
    if after_an_experiment:
        experiment(project, monkeypatch, "optimizer=adam")
    else:
        write_stage_config(project)
    written = stage_config(project)
    edit(project / "conf" / "model" / "convnet.yaml", "activation: relu", "activation: sigmoid")
    with pytest.raises(ConfigError) as caught:
        write_stage_config(project)
    message = str(caught.value)
    assert "model.activation 'relu' -> 'sigmoid'" in message and "dvc exp run" in message, message
    assert "\n" not in message and stage_config(project) == written  # what the stages ran, kept


def test_a_workspace_without_a_record_refuses_knobs_conf_does_not_compose_to(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"]["activation"], params["trainer"]["max_epochs"] = "sigmoid", 1
    params["optimizer"]["lr"], params["seed"] = 0.01, 7
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=r"model.activation 'sigmoid' -> 'relu', .* \(and 1 more\)"):
        write_stage_config(project)


def test_options_and_differences():
    assert option(["-cd", ".", "-cn", "params"], "-cn", "--config-name") == "params"
    assert option(["--config-name=params"], "-cn", "--config-name") == "params"
    assert option(["seed=1"], "-cn", "--config-name") is None
    found = {"a": {"b": 1, "c": 2}, "old": 1}
    assert differing_keys(found, {"a": {"b": 1, "c": 3}, "new": 4}) == [
        ("a.c", 2, 3), ("new", None, 4), ("old", 1, None),
    ]  # fmt: skip


def test_a_missing_params_yaml_is_one_line_naming_the_command_that_makes_it(project):
    (project / "params.yaml").unlink()
    with pytest.raises(ConfigError, match=r"params.yaml is missing: run `dvc exp run`"):
        write_stage_config(project)
