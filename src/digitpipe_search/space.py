"""A search space as written in conf/search/<name>.yaml: each key a config key or group, each value
the arguments of one of Optuna's distributions, which checks them itself (bounds, log scale, step),
once, before any trial; then the Hydra overrides a trial trains with.

    model.activation: {choices: [relu, leaky_relu, elu]}     # CategoricalDistribution (or a group's)
    optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}     # FloatDistribution, log scale
    optimizer.weight_decay: {low: 0.0, high: 1.0e-3}         # FloatDistribution
    trainer.max_epochs: {low: 2, high: 6}                    # IntDistribution (whole-number bounds)
    data.batch_size: {low: 32, high: 256, step: 32}
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from digitpipe.errors import ConfigError

FIELDS = {"choices", "low", "high", "log", "step"}  # the distributions' own arguments
SHAPE = "a range is {low: <number>, high: <number>} (log: true, or step: <number>), a choice {choices: [...]}"


def check_yaml(config_dir: Path, config_name: str, args: list[str]) -> None:
    """A config file this command composes (a space in conf/search/, say) that is not valid YAML is
    one line naming the file, line and column; Hydra would raise its parser's traceback."""
    import yaml
    from hydra import compose, initialize_config_dir

    from digitpipe.cli import VERSION_BASE

    try:
        with initialize_config_dir(str(config_dir), version_base=VERSION_BASE):
            compose(config_name, overrides=[a for a in args if not a.startswith("-")])
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = (
            f"{mark.name} is not valid YAML at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        )
        problem = getattr(err, "problem", None) or err
        raise ConfigError(f"{where or 'a config file is not valid YAML'}: {problem}; fix the file") from err
    except Exception:  # anything else is reported by Hydra itself, or by the checks after it
        return


def parse_space(space: Mapping[str, Any] | None) -> dict[str, Any]:
    """Each key's Optuna distribution, or a ConfigError naming the first malformed entry."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(space, DictConfig):
        space = OmegaConf.to_container(space, resolve=True)
    if not space:
        raise ConfigError(f"search.space is empty; give at least one key: {SHAPE}")
    return {key: distribution(key, spec) for key, spec in flattened(space).items()}


def flattened(space: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`optimizer: {lr: {low: ..}}` as `optimizer.lr: {low: ..}`, so a command line can add a range
    (+search.space.optimizer.lr={low:1e-4,high:1e-2}); a nested range replaces a flat one."""
    flat: dict[str, Any] = {}
    for key, spec in space.items():
        name = f"{prefix}{key}"
        if isinstance(spec, Mapping) and spec and not set(spec) & FIELDS:
            flat.update(flattened(spec, f"{name}."))
        else:
            flat[name] = spec
    return flat


def distribution(key: str, spec: Any):
    """One entry as the Optuna distribution its fields make: choices, or whole-number bounds (and
    step), or any other bounds."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if not isinstance(spec, Mapping) or not isinstance(spec.get("choices", []), list):
        raise ConfigError(f"search.space.{key}: {SHAPE}, not {spec!r}")
    given = {k: v for k, v in spec.items() if v is not None}
    whole = all(isinstance(v, int) for k, v in given.items() if k != "log")
    kind = CategoricalDistribution if "choices" in spec else IntDistribution if whole else FloatDistribution
    try:
        return kind(**given)
    except ValueError as err:  # Optuna's own words
        raise ConfigError(f"search.space.{key}: {err}") from err
    except TypeError as err:  # a field it does not take, or lacks, or a value that is no number
        raise ConfigError(f"search.space.{key}: {err}; {SHAPE}") from err


def stored(space: Mapping[str, Any]) -> dict[str, dict]:
    """The space as Optuna's JSON of each distribution: what a study keeps (a rerun must match it)."""
    from optuna.distributions import distribution_to_json

    return {key: json.loads(distribution_to_json(d)) for key, d in space.items()}


def corner(space: Mapping[str, Any], end: int) -> dict[str, Any]:
    """Every key at its first (end=0) or last (-1) choice or bound: both are checked before a search."""
    return {key: (getattr(d, "choices", None) or (d.low, d.high))[end] for key, d in space.items()}


def overrides(values: Mapping[str, Any], groups: Collection[str] = ()) -> list[str]:
    """Hydra overrides for one point of the space: `optimizer=adam`, `optimizer.lr=0.0031`; a
    config group's null choice is `~scheduler` (Hydra takes no `scheduler=null` for a group)."""
    return [f"~{key}" if value is None and key in groups else f"{key}={override_value(value)}"
            for key, value in values.items()]  # fmt: skip


def config_groups(config_dir: Path) -> frozenset[str]:
    """The config groups: conf/'s folders (optimizer, scheduler, ...)."""
    return frozenset(p.name for p in Path(config_dir).iterdir() if p.is_dir())


def override_value(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)  # null, true, false
    return repr(value) if isinstance(value, float) else str(value)  # a float's every digit: the winner's


def suggest(trial, space: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's point: sampled, or a retried trial's own (Optuna returns its stored params)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    def one(key: str, d) -> Any:
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(key, d.choices)
        suggested = trial.suggest_int if isinstance(d, IntDistribution) else trial.suggest_float
        return suggested(key, d.low, d.high, step=d.step, log=d.log)

    return {key: one(key, d) for key, d in space.items()}
