"""Search spaces as written in conf/search/: parsed, refused in one line, turned into overrides; a
study that remembers its space; the surplus rule that keeps the total exact."""

from __future__ import annotations

import optuna
import pytest

from digitpipe.errors import ConfigError
from digitpipe_search.space import config_groups, overrides, parse_space, stored, suggest
from digitpipe_search.study import check_same_search, redacted
from digitpipe_search.trials import is_surplus

from ..conftest import ROOT, compose_config


def test_every_space_in_conf_parses_and_each_kind_of_range_becomes_its_own_distribution():
    for path in (ROOT / "conf" / "search").glob("*.yaml"):
        assert parse_space(__import__("yaml").safe_load(path.read_text())["space"])
    params = parse_space({
        "optimizer": {"choices": ["adam", "sgd"]},
        "optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "trainer.max_epochs": {"low": 2, "high": 6},
        "data.batch_size": {"low": 32, "high": 256, "step": 32},
        "optimizer.weight_decay": {"low": 0, "high": 0.01},
    })  # fmt: skip
    kinds = [type(params[k]).__name__.removesuffix("Distribution") for k in params]
    assert kinds == ["Categorical", "Float", "Int", "Int", "Float"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    point = suggest(study.ask(), params)
    assert point["optimizer"] in ("adam", "sgd") and 1e-4 <= point["optimizer.lr"] <= 1e-2
    assert point["data.batch_size"] % 32 == 0 and isinstance(point["trainer.max_epochs"], int)


def test_a_nested_range_from_the_command_line_is_a_dotted_key_and_replaces_the_flat_one():
    nested = {"optimizer": {"lr": {"choices": [0.1]}}}
    space = parse_space({"optimizer.lr": {"low": 1e-4, "high": 1e-2}, **nested})
    assert {key: d.choices for key, d in space.items()} == {"optimizer.lr": (0.1,)}


@pytest.mark.parametrize(("spec", "message"), [
    # Optuna's distributions' own words
    ({"low": 0.1, "high": 0.01}, "`low <= high` must hold, but got (low=0.1, high=0.01)"),
    ({"low": 0.0, "high": 1.0, "log": True}, "`low > 0` must hold for `log=True`"),
    ({"low": 1e-3, "high": 1.0, "log": True, "step": 0.1}, "`step` is not supported when `log` is true"),
    ({"low": 1, "high": 5, "step": -1}, "`step > 0` must hold"),
    ({"choices": []}, "must contain one or more elements"),
    # their constructors' own refusals of a field they lack or do not take, or a value that is no
    # number, with what a range and a choice are
    ({"low": 1}, "missing 1 required positional argument: 'high'; a range is {low: <number>, high:"),
    ({"low": "a", "high": 2}, "'>' not supported between instances of 'str' and 'int'; a range is"),
    ({"choices": [1, 2], "low": 0}, "unexpected keyword argument 'low'; a range is"),
    ({"low": 1, "high": 2, "scale": "log"}, "unexpected keyword argument 'scale'; a range is"),
    # what is neither a range nor a choice
    ({"choices": "ab"}, "a choice {choices: [...]}, not {'choices': 'ab'}"),
    (0.5, "a choice {choices: [...]}, not 0.5"),
])  # fmt: skip
def test_a_malformed_range_is_refused_in_one_line_naming_its_key(spec, message):
    with pytest.raises(ConfigError) as refused:
        parse_space({"optimizer.lr": spec})
    assert str(refused.value).startswith("search.space.optimizer.lr: ") and message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_an_empty_space_is_refused():
    with pytest.raises(ConfigError, match="search.space is empty"):
        parse_space({})


def test_a_point_is_the_overrides_hydra_composes_with_every_digit_kept():
    point = {"optimizer": "adam", "optimizer.lr": 0.0012345678901234, "scheduler": None, "x": True}
    groups = config_groups(ROOT / "conf")
    assert {"optimizer", "scheduler", "trainer"} <= groups
    expected = ["optimizer=adam", "optimizer.lr=0.0012345678901234", "~scheduler", "x=true"]
    assert overrides(point, groups) == expected
    assert overrides({"model.init": None}, groups) == ["model.init=null"]  # a value, not a group
    cfg = compose_config(overrides(point, groups)[:3])
    assert cfg.optimizer.lr == 0.0012345678901234 and cfg.optimizer._target_ == "torch.optim.Adam"
    assert compose_config(["scheduler=cosine", "~scheduler"]).scheduler is None


def test_a_study_refuses_another_space_or_another_config_around_it_naming_the_difference():
    attrs = {
        "space": stored(parse_space({"optimizer.lr": {"low": 0.001, "high": 0.1, "log": True}})),
        "config": {"trainer.max_epochs": 3, "data.batch_size": 256},
    }
    check_same_search("s", attrs, attrs["space"], dict(attrs["config"]))  # the same: fine
    changed = stored(
        parse_space({"optimizer.lr": {"low": 0.001, "high": 0.5, "log": True}, "seed": {"choices": [1]}})
    )
    with pytest.raises(ConfigError) as refused:
        check_same_search("s", attrs, changed, {"trainer.max_epochs": 3, "data.batch_size": 32})
    message = str(refused.value)
    assert (
        "optimizer.lr: FloatDistribution(high=0.1, log=True, low=0.001, step=None) in the study, "
        "FloatDistribution(high=0.5, log=True, low=0.001, step=None) now"
    ) in message
    assert "seed: absent in the study, CategoricalDistribution(choices=(1,)) now" in message
    assert "data.batch_size=256 in the study, 32 now" in message
    assert "trainer.max_epochs" not in message  # only what differs
    assert "search.study=" in message and "new study" in message


def test_every_process_and_every_rerun_samples_its_own_points_and_one_process_repeats_a_study():
    from omegaconf import OmegaConf

    from digitpipe_search.study import make_sampler

    settings = OmegaConf.create({"sampler_seed": 42, "startup_trials": 2})

    def objective(trial) -> float:
        return -((trial.suggest_float("x", -10, 10) - 2) ** 2)

    def study(storage, n: int) -> list[float]:
        made = optuna.create_study(study_name="s", storage=storage, load_if_exists=True,
                                   sampler=make_sampler(settings), direction="maximize")  # fmt: skip
        made.optimize(objective, n_trials=n)
        return [t.params["x"] for t in made.trials]

    whole = study(None, 6)
    assert study(None, 6) == whole  # the same seed, one process: the same study
    shared = optuna.storages.InMemoryStorage()
    study(shared, 3)
    assert study(shared, 3) == whole  # a rerun continues with new points (the old code repeated)
    assert len(set(whole)) == 6
    # two processes side by side: each takes other trial numbers, so other points
    first, second = (optuna.load_study(study_name="s", storage=shared, sampler=make_sampler(settings))
                     for _ in range(2))  # fmt: skip
    a, b = first.ask(), second.ask()
    assert a.suggest_float("x", -10, 10) != b.suggest_float("x", -10, 10)


def test_a_storage_url_is_shown_without_its_password():
    assert redacted("postgresql+psycopg2://me:s3cret@db.example:5432/optuna") == (
        "postgresql+psycopg2://me:***@db.example:5432/optuna")  # fmt: skip


def test_a_trial_started_once_the_total_was_reached_is_surplus_but_a_retried_one_never_is():
    study = optuna.create_study(direction="maximize")
    for value in (0.1, 0.2):
        study.add_trial(optuna.create_trial(value=value, params={}, distributions={}))
    late = study.ask()
    assert is_surplus(late, total=2) and not is_surplus(late, total=3)
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.WAITING, params={}, distributions={},
                                        system_attrs={"failed_trial": 0}))  # fmt: skip
    retried = study.ask()  # pops the waiting trial: the retry of trial 0
    assert not is_surplus(retried, total=2)
