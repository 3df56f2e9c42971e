"""A search space as written in conf/search/<name>.yaml: each key a config key or group, each value a
range or a list of choices. Checked here, once, before any trial; turned into Optuna distributions
and into the Hydra overrides a trial trains with.

    model.activation: {choices: [relu, leaky_relu, elu]}     # categorical (a config group too: optimizer)
    optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}     # a float on a log scale
    optimizer.weight_decay: {low: 0.0, high: 1.0e-3}         # a float on a linear scale
    trainer.max_epochs: {low: 2, high: 6}                    # an int (both bounds whole numbers)
    data.batch_size: {low: 32, high: 256, step: 32}

Optuna's distributions check their own bounds, scales and steps, in their own words.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitpipe.errors import ConfigError

FIELDS = {"choices", "low", "high", "log", "step"}


@dataclass(frozen=True)
class Param:
    key: str  # a dotted config key (optimizer.lr) or a config group (optimizer)
    distribution: Any  # Optuna's: CategoricalDistribution, IntDistribution or FloatDistribution

    @property
    def choices(self) -> tuple:
        return tuple(getattr(self.distribution, "choices", ()))

    def ends(self) -> tuple[Any, Any]:
        """The two extreme values: a trial at each is composed and checked before the search starts."""
        if self.choices:
            return self.choices[0], self.choices[-1]
        return self.distribution.low, self.distribution.high

    def as_dict(self) -> dict[str, Any]:
        """What identifies the range (stored with the study: a rerun must search the same space)."""
        import json

        from optuna.distributions import distribution_to_json

        return json.loads(distribution_to_json(self.distribution))


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
        raise ConfigError(
            f"{where or 'a config file is not valid YAML'}: {err.problem}; fix the file"
        ) from err
    except Exception:  # anything else is reported by Hydra itself, or by the checks after it
        return


def parse_space(space: Mapping[str, Any] | None) -> list[Param]:
    """The space's parameters, or a ConfigError naming the first malformed entry."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(space, DictConfig):
        space = OmegaConf.to_container(space, resolve=True)
    if not space:
        raise ConfigError(
            "search.space is empty; give at least one key, "
            "e.g. optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}"
        )
    return [parse_param(key, spec) for key, spec in flattened(space).items()]


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


def parse_param(key: str, spec: Any) -> Param:
    """One entry as Optuna's distribution, which checks its own bounds, log scale and step; what it
    leaves unchecked (the entry's shape, its fields, numbers that are not) is checked here."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    where = f"search.space.{key}"
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where}: give a range {{low: ..., high: ...}} or {{choices: [...]}}, not {spec!r}"
        )
    if unknown := sorted(set(spec) - FIELDS):
        raise ConfigError(
            f"{where}: unknown field {', '.join(unknown)}; the fields are {', '.join(sorted(FIELDS))}"
        )
    numbers = {k: spec.get(k) for k in ("low", "high", "step") if spec.get(k) is not None}
    if "choices" in spec and numbers:
        raise ConfigError(f"{where}: choices cannot be combined with a range (low, high, log, step)")
    if "choices" not in spec and ("low" not in numbers or "high" not in numbers):
        raise ConfigError(f"{where}: a range needs both low and high (or give choices: [...])")
    if bad := next(
        (k for k, v in numbers.items() if isinstance(v, bool) or not isinstance(v, int | float)), None
    ):
        raise ConfigError(f"{where}: {bad} must be a number, not {numbers[bad]!r}")
    try:
        if "choices" in spec:
            if not isinstance(spec["choices"], list | tuple):
                raise ValueError(f"choices must be a list, not {spec['choices']!r}")
            return Param(key, CategoricalDistribution(tuple(spec["choices"])))
        whole = all(isinstance(v, int) for v in numbers.values())
        kind = IntDistribution if whole else FloatDistribution
        return Param(key, kind(log=bool(spec.get("log", False)), **numbers))
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from err


def overrides(values: Mapping[str, Any], groups: Collection[str] = ()) -> list[str]:
    """Hydra overrides for one point of the space: `optimizer=adam`, `optimizer.lr=0.0031`; a
    config group's null choice is `~scheduler` (Hydra takes no `scheduler=null` for a group)."""
    return [f"~{key}" if value is None and key in groups else f"{key}={override_value(value)}"
            for key, value in values.items()]  # fmt: skip


def config_groups(config_dir: Path) -> frozenset[str]:
    """The config groups: conf/'s folders (optimizer, scheduler, ...)."""
    return frozenset(p.name for p in Path(config_dir).iterdir() if p.is_dir())


def override_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)  # every digit: the winner trains with exactly the trial's value
    return str(value)


def suggest(trial, params: list[Param]) -> dict[str, Any]:
    """The trial's point: sampled, or a retried trial's own (Optuna returns its stored params)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    values = {}
    for p in params:
        d = p.distribution
        if isinstance(d, CategoricalDistribution):
            values[p.key] = trial.suggest_categorical(p.key, list(d.choices))
        elif isinstance(d, IntDistribution):
            values[p.key] = trial.suggest_int(p.key, d.low, d.high, step=d.step, log=d.log)
        else:
            values[p.key] = trial.suggest_float(p.key, d.low, d.high, step=d.step, log=d.log)
    return values
