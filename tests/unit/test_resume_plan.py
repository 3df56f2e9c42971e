"""Which interrupted training a new one continues, and what makes two trainings the same."""

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from digitpipe.errors import ConfigError
from digitpipe.tracking.metadata import flatten_config
from digitpipe.training.resume import differences, identity, is_result_key, plan_start
from digitpipe.training.run_dir import RUN_KEY, RunDir, interrupted_runs

from ..conftest import ROOT, compose_config


def interrupted(root, run_id: str, cfg_overrides: list[str]) -> RunDir:
    """A run directory as a killed training leaves it: last.ckpt naming its run and identity."""
    run_dir = RunDir(root / run_id)
    run_dir.path.mkdir(parents=True)
    state = {"run_id": run_id, "identity": identity(compose_config(cfg_overrides)), "history": []}
    torch.save({"state_dict": {}, RUN_KEY: state}, run_dir.last)
    return run_dir


def test_settings_that_do_not_change_the_result_are_not_part_of_a_trainings_identity():
    base = identity(compose_config())
    same = ["mlflow.experiment_name=x", "resume=false", "paths.model_dir=elsewhere",
            "data.download.timeout_s=5", "test_after_fit=true"]  # fmt: skip
    assert identity(compose_config(same)) == base
    for override in ["model.activation=tanh", "optimizer.lr=0.01", "seed=7", "data.val_size=100",
                     "trainer.max_epochs=9", "data.files.test_labels.sha256=00", "~callbacks.channels_last",
                     "diagnostics=on"]:  # fmt: skip
        assert identity(compose_config([override])) != base, override


def test_differences_name_each_changed_setting_and_the_code():
    old, new = identity(compose_config()), identity(compose_config(["model.activation=tanh"]))
    assert differences(old, new) == ["model.activation relu -> tanh"]
    assert differences({**old, "code": "0" * 64}, old) == ["the code in src/digitpipe"]
    assert differences({}, old) == ["it was made by an older version that did not record its config"]


def test_auto_continues_the_interrupted_training_with_the_same_settings(tmp_path):
    other = interrupted(tmp_path, "other", ["model.activation=tanh"])
    same = interrupted(tmp_path, "same", [])
    (other.path / "last.ckpt").touch()  # the newest: looked at first, and passed over
    plan = plan_start("auto", tmp_path, identity(compose_config()), is_launcher=True)
    assert plan.run_dir == same and plan.checkpoint == same.last
    assert len(plan.notices) == 1 and "model.activation tanh -> relu" in plan.notices[0]


def test_auto_starts_a_new_run_when_nothing_matches_and_false_always_does(tmp_path):
    interrupted(tmp_path, "other", ["seed=3"])
    assert plan_start("auto", tmp_path, identity(compose_config()), is_launcher=True).run_dir is None
    interrupted(tmp_path, "same", [])
    assert plan_start(False, tmp_path, identity(compose_config()), is_launcher=True).run_dir is None


def test_resume_true_refuses_an_interrupted_training_with_other_settings_in_one_line(tmp_path):
    interrupted(tmp_path, "abc", ["optimizer.lr=0.01"])
    with pytest.raises(ConfigError) as refused:
        plan_start(True, tmp_path, identity(compose_config()), is_launcher=True)
    message = str(refused.value)
    assert message.startswith("cannot resume run abc: this config differs from the one it was trained with")
    assert "optimizer.lr 0.01 -> 0.001" in message and "\n" not in message


def test_resume_true_with_nothing_to_resume_and_an_unknown_run_id_are_refused(tmp_path):
    current = identity(compose_config())
    with pytest.raises(ConfigError, match="holds no interrupted training"):
        plan_start(True, tmp_path, current, is_launcher=True)
    with pytest.raises(ConfigError, match="does not exist"):
        plan_start("0123abcd", tmp_path, current, is_launcher=True)


def test_a_training_still_running_is_neither_resumed_nor_listed(tmp_path):
    run_dir = interrupted(tmp_path, "busy", [])
    with run_dir.held():  # as the live training holds it
        assert interrupted_runs(tmp_path) == []
        assert plan_start("auto", tmp_path, identity(compose_config()), is_launcher=True).run_dir is None
        with pytest.raises(ConfigError, match="still running"):
            plan_start("busy", tmp_path, identity(compose_config()), is_launcher=True)
    assert interrupted_runs(tmp_path) == [run_dir]


def test_the_train_stage_reruns_on_every_knob_and_every_other_setting_a_resume_must_match():
    """dvc.yaml's train stage takes every knob of params.yaml as its params (the table's columns)
    and depends on the whole config it runs (reports/stage_config.yaml, written by check_conf): so it
    reruns on each key that makes a training another one (RESULT_KEYS), and each knob is such a key."""
    train = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    assert train["params"] == [{"params.yaml": None}]  # the whole file
    assert "reports/stage_config.yaml" in train["deps"]
    assert train["cmd"].endswith("-cd reports -cn stage_config")
    knobs = flatten_config(OmegaConf.create(yaml.safe_load((ROOT / "params.yaml").read_text())))
    assert knobs and all(is_result_key(key) for key in knobs), [k for k in knobs if not is_result_key(k)]
    assert all(is_result_key(key) for key in ("trainer.devices", "callbacks.channels_last._target_"))
    assert not any(is_result_key(key) for key in ("mlflow.experiment_name", "paths.model_dir", "resume"))
