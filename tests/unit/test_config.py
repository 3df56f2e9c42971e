import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from digitpipe.config import validate
from digitpipe.errors import ConfigError
from digitpipe.tracking.metadata import flatten_config, run_name

from ..conftest import ROOT, compose_config


def test_params_yaml_is_exactly_what_hydra_composes_from_conf():
    """DVC tracks params.yaml; the stages read it. It must equal the composed conf/ (regenerate
    it with `dvc exp run`, which composes conf/ into params.yaml)."""
    composed = OmegaConf.to_container(compose_config(), resolve=True)
    tracked = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert tracked == composed


def test_the_default_recipe_is_the_seed_recipe():
    cfg = compose_config()
    assert cfg.model.activation == "relu"
    assert cfg.optimizer._target_ == "torch.optim.RMSprop" and cfg.optimizer.lr == 0.001
    assert cfg.data.batch_size == 64 and cfg.trainer.max_epochs == 5


@pytest.mark.parametrize("name", ["rmsprop", "adam", "adamw", "sgd"])
def test_every_optimizer_choice_instantiates_with_cli_overrides(name):
    cfg = compose_config([f"optimizer={name}", "optimizer.lr=0.05", "optimizer.weight_decay=0.001"])
    optimizer = instantiate(cfg.optimizer)(nn.Linear(2, 2).parameters())
    assert optimizer.defaults["lr"] == 0.05 and optimizer.defaults["weight_decay"] == 0.001


@pytest.mark.parametrize(("choice", "expected"), [("cosine", 7), ("step", 2)])
def test_scheduler_choices_instantiate(choice, expected):
    cfg = compose_config([f"scheduler={choice}", "trainer.max_epochs=7"])
    optimizer = instantiate(compose_config().optimizer)(nn.Linear(2, 2).parameters())
    scheduler = instantiate(cfg.scheduler)(optimizer)
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


def test_run_names_say_what_was_trained():
    assert run_name(compose_config(["model.activation=elu", "optimizer=adam"])) == "elu-adam-lr0.001"
