"""`dvc repro` on a params.yaml that no longer matches conf/ stops in one line; experiments pass."""

from __future__ import annotations

import shutil

import pytest
import yaml

from digitpipe.cli import check_params_current, differing_keys, option
from digitpipe.errors import ConfigError

from ..conftest import ROOT

STAGE = ["-cd", ".", "-cn", "stage"]  # how dvc.yaml's commands run a stage


@pytest.fixture
def project(tmp_path, monkeypatch):
    """conf/ and params.yaml as committed, in a temporary directory that is the working directory."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return tmp_path


def edit(path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


def test_params_yaml_as_conf_composes_it_passes(project):
    check_params_current(STAGE, project / "conf")


def test_conf_edited_without_recomposing_is_refused_naming_the_key_and_the_fix(project):
    edit(project / "conf" / "model" / "convnet.yaml", "activation: relu", "activation: sigmoid")
    with pytest.raises(ConfigError) as caught:
        check_params_current(STAGE, project / "conf")
    message = str(caught.value)
    assert "model.activation='relu' where conf/ has 'sigmoid'" in message
    assert "dvc exp run" in message and "git checkout params.yaml" in message and "\n" not in message


def test_a_finished_experiments_values_left_in_params_yaml_are_refused(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model"]["activation"], params["trainer"]["max_epochs"] = "sigmoid", 1
    params["optimizer"]["lr"], params["seed"] = 0.01, 7
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        ConfigError, match=r"model.activation='sigmoid' where conf/ has 'relu', .* \(and 1 more\)"
    ):
        check_params_current(STAGE, project / "conf")


def test_inside_a_dvc_experiment_nothing_is_checked(project, monkeypatch):
    edit(project / "params.yaml", "activation: relu", "activation: sigmoid")
    check_params_current(["model.activation=tanh"], project / "conf")  # python src/train.py ...: conf/
    monkeypatch.setenv("DVC_EXP_NAME", "rapid-hump")  # dvc exp run composed its -S into params.yaml
    check_params_current(STAGE, project / "conf")


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
        check_params_current(STAGE, project / "conf")


def test_an_edit_to_a_setting_that_is_not_a_knob_passes(project):
    """Not in params.yaml: the stages that read it depend on its file and rerun with it."""
    edit(project / "conf" / "data" / "mnist.yaml", "eval_batch_size: 1000", "eval_batch_size: 500")
    check_params_current(STAGE, project / "conf")
