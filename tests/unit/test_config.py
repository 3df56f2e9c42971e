import subprocess
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from digitpipe.config.settings import validate
from digitpipe.errors import ConfigError
from digitpipe.tracking.metadata import flatten_config, run_name
from digitpipe.training.build import build_model

from ..conftest import ROOT, compose_config


def test_the_committed_params_yaml_is_exactly_what_hydra_composes_from_conf():
    """DVC tracks params.yaml; the stages take its knobs. It must equal the knobs conf/ composes to
    (regenerate it with `dvc exp run`, which composes conf/dvc_params.yaml into params.yaml). The
    committed file is checked, not the workspace's, which a user's `dvc exp run -S ...` changes."""
    composed = OmegaConf.to_container(compose_config(config_name="dvc_params"), resolve=True)
    committed = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=ROOT, capture_output=True, text=True)
    tracked = committed.stdout if committed.returncode == 0 else (ROOT / "params.yaml").read_text()  # no git
    assert yaml.safe_load(tracked) == composed


def test_params_yaml_holds_the_knobs_alone_and_a_stage_runs_what_python_src_train_py_runs():
    """params.yaml is conf/knobs/default.yaml composed (what `dvc exp show` shows), and the stages'
    config (conf/stage.yaml: conf/config.yaml with params.yaml's knobs) is the whole config, equal to
    `python src/train.py`'s, for the default knobs and for knobs that switch groups."""
    knobs = OmegaConf.to_container(compose_config(config_name="dvc_params"), resolve=True)
    assert set(knobs) == {"model", "optimizer", "seed", "scheduler", "data", "trainer"}
    assert set(knobs["data"]) == {"batch_size"} and set(knobs["trainer"]) == {"max_epochs", "precision"}
    for overrides in ([], ["optimizer=adam", "optimizer.lr=0.01"], ["experiment=fast"], ["scheduler=cosine"]):
        params = OmegaConf.to_container(compose_config(overrides, config_name="dvc_params"), resolve=True)
        full = OmegaConf.to_container(compose_config(overrides), resolve=True)
        with tempfile.TemporaryDirectory() as root:  # params.yaml as `dvc exp run -S ...` writes it
            (Path(root) / "params.yaml").write_text(yaml.safe_dump(params))
            stage = compose_config([f"hydra.searchpath=[file://{root}]"], config_name="stage")
        assert OmegaConf.to_container(stage, resolve=True) == full, overrides


def test_the_default_recipe_is_the_seed_recipe():
    cfg = compose_config()
    assert cfg.model.activation == "relu"
    assert cfg.optimizer._target_ == "torch.optim.RMSprop" and cfg.optimizer.lr == 0.001
    assert cfg.data.batch_size == 64 and cfg.trainer.max_epochs == 5


@pytest.mark.parametrize("name", ["rmsprop", "adam", "adamw", "sgd"])
def test_every_optimizer_choice_instantiates_with_cli_overrides(name):
    cfg = compose_config([f"optimizer={name}", "optimizer.lr=0.05", "optimizer.weight_decay=0.001"])
    optimizer = instantiate(cfg.optimizer, _partial_=True)(nn.Linear(2, 2).parameters())
    assert optimizer.defaults["lr"] == 0.05 and optimizer.defaults["weight_decay"] == 0.001


@pytest.mark.parametrize(("choice", "expected"), [("cosine", 7), ("step", 2)])
def test_scheduler_choices_instantiate(choice, expected):
    cfg = compose_config([f"scheduler={choice}", "trainer.max_epochs=7"])
    optimizer = instantiate(compose_config().optimizer, _partial_=True)(nn.Linear(2, 2).parameters())
    scheduler = instantiate(cfg.scheduler, _partial_=True)(optimizer)
    assert getattr(scheduler, "T_max", getattr(scheduler, "step_size", None)) == expected


def test_no_scheduler_by_default():
    assert compose_config().scheduler is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=0", "optimizer.lr=0 is invalid: the learning rate must be a positive number"),
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1 is invalid"),
        ("data.batch_size=0", "data.batch_size=0 is invalid: the training batch size"),
        ("trainer.max_epochs=-1", "trainer.max_epochs=-1 is invalid: the number of epochs"),
        ("model.activation=swish", "model.activation='swish' is not a known activation"),
        ("mlflow.system_metrics_interval_s=0", "mlflow.system_metrics_interval_s=0 is invalid: give seconds"),
        ("mlflow.system_metrics_interval_s=often", "mlflow.system_metrics_interval_s='often' is invalid"),
        ("seed=abc", "seed='abc' is invalid: the seed must be an integer from 0 to 4294967295"),
        ("seed=true", "seed=True is invalid: the seed must be an integer"),
        ("seed=1.5", "seed=1.5 is invalid"),
        ("seed=-1", "seed=-1 is invalid"),
        ("seed=4294967296", "seed=4294967296 is invalid"),
        ("seed=null", "seed=None is invalid"),
    ],
)
def test_invalid_settings_are_rejected_with_the_key_and_value(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        validate(compose_config([override]))


@pytest.mark.parametrize("seed", [0, 7, 4294967295])
def test_every_seed_numpy_and_torch_accept_is_valid(seed):
    validate(compose_config([f"seed={seed}"]))


def test_params_are_flattened_to_override_syntax():
    flat = flatten_config(compose_config(["model.activation=tanh"]))
    assert flat["model.activation"] == "tanh"
    assert flat["optimizer.lr"] == 0.001
    assert flat["scheduler"] is None


def test_run_names_say_what_was_trained(monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert run_name(compose_config()) == "relu-rmsprop-lr0.001-b64-5ep-s42"
    elu_adam = compose_config(["model.activation=elu", "optimizer=adam"])
    assert run_name(elu_adam) == "elu-adam-lr0.001-b64-5ep-s42"
    assert run_name(compose_config(["experiment=fast"])) == "relu-adam-lr0.005-onecyclelr-b128-2ep-s42"
    assert run_name(compose_config(["mlflow.run_name=mine"])) == "mine"


@pytest.mark.parametrize("override", ["trainer.max_epochs=1", "seed=7", "trainer.precision=bf16-mixed",
                                      "data.batch_size=128", "scheduler=cosine"])  # fmt: skip
def test_runs_that_differ_in_what_users_vary_get_different_names(monkeypatch, override):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert run_name(compose_config([override])) != run_name(compose_config())


def test_a_dvc_experiments_runs_carry_its_name(monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "rapid-hump")
    assert run_name(compose_config()) == "rapid-hump: relu-rmsprop-lr0.001-b64-5ep-s42"


def test_the_fast_recipe_overrides_the_seed_recipe_and_nothing_else():
    seed, fast = compose_config(), compose_config(["experiment=fast"])
    assert fast.optimizer._target_ == "torch.optim.Adam" and fast.optimizer.lr == 0.005
    assert fast.scheduler._target_ == "torch.optim.lr_scheduler.OneCycleLR"
    assert fast.scheduler.total_steps is None  # the training's own length
    assert (fast.data.batch_size, fast.trainer.max_epochs) == (128, 2)
    assert fast.model == seed.model and fast.trainer.precision == seed.trainer.precision
    assert compose_config(["experiment=fast", "trainer.max_epochs=3"]).trainer.max_epochs == 3  # the CLI wins


def test_a_one_cycle_schedule_spans_the_whole_training_and_steps_every_optimizer_step(tmp_path):
    cfg = compose_config(["experiment=fast", "trainer.max_epochs=2"])
    model = build_model(cfg, validate(cfg))
    rates = []

    class Rates(L.Callback):
        def on_train_batch_start(self, trainer, *_):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    data = DataLoader(TensorDataset(torch.rand(40, 1, 28, 28), torch.arange(40) % 10), batch_size=8)
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", callbacks=[Rates()],
                        default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, data)
    assert len(rates) == 10 and len(set(rates)) == 10  # a new rate every step, not every epoch
    peak = rates.index(max(rates))
    assert 0 < peak < 9 and max(rates) == pytest.approx(0.005, rel=0.2)  # warms up, then anneals
    assert rates[-1] < rates[0] < max(rates)
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == 10  # the training's own length
