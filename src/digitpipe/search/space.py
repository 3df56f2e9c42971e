"""A search space as written in conf/search/<name>.yaml: each key a config key or group, each value a
range or a list of choices. Checked here, once, before any trial; turned into Optuna distributions
and into the Hydra overrides a trial trains with.

    model.activation: {choices: [relu, leaky_relu, elu]}     # categorical (a config group too: optimizer)
    optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}     # a float on a log scale
    optimizer.weight_decay: {low: 0.0, high: 1.0e-3}         # a float on a linear scale
    trainer.max_epochs: {low: 2, high: 6}                    # an int (both bounds whole numbers)
    data.batch_size: {low: 32, high: 256, step: 32}
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitpipe.errors import ConfigError

FIELDS = {"choices", "low", "high", "log", "step", "type"}
TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    key: str  # a dotted config key (optimizer.lr) or a config group (optimizer)
    type: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def ends(self) -> tuple[Any, Any]:
        """The two extreme values: a trial at each is composed and checked before the search starts."""
        if self.type == "categorical":
            return self.choices[0], self.choices[-1]
        return self.low, self.high

    def as_dict(self) -> dict[str, Any]:
        """What identifies the range (stored with the study: a rerun must search the same space)."""
        if self.type == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        return {"type": self.type, "low": self.low, "high": self.high, "log": self.log, "step": self.step}


def check_yaml(config_dir: Path, config_name: str, args: list[str]) -> None:
    """A config file this command composes (a space in conf/search/, say) that is not valid YAML is
    one line naming the file, line and column; Hydra would raise its parser's traceback."""
    import yaml
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(str(config_dir), version_base="1.3"):
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
    where = f"search.space.{key}"
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where}: give a range {{low: ..., high: ...}} or {{choices: [...]}}, not {spec!r}"
        )
    if unknown := sorted(set(spec) - FIELDS):
        raise ConfigError(
            f"{where}: unknown field {', '.join(unknown)}; the fields are {', '.join(sorted(FIELDS))}"
        )
    kind = spec.get("type")
    if kind is not None and kind not in TYPES:
        raise ConfigError(f"{where}: type {kind!r} is not one of {', '.join(TYPES)}")
    if "choices" in spec:
        return categorical(where, key, spec, kind)
    return numeric(where, key, spec, kind)


def categorical(where: str, key: str, spec: Mapping[str, Any], kind: str | None) -> Param:
    choices = spec["choices"]
    if kind not in (None, "categorical") or {"low", "high", "log", "step"} & set(spec):
        raise ConfigError(f"{where}: choices cannot be combined with a range (low, high, log, step)")
    if not isinstance(choices, list | tuple) or not choices:
        raise ConfigError(f"{where}: choices must be a non-empty list, not {choices!r}")
    if any(not isinstance(c, str | int | float | bool) and c is not None for c in choices):
        raise ConfigError(f"{where}: each choice must be a string, number, boolean or null")
    if len(set(map(repr, choices))) != len(choices):
        raise ConfigError(f"{where}: choices repeat a value: {list(choices)}")
    return Param(key, "categorical", choices=tuple(choices))


def numeric(where: str, key: str, spec: Mapping[str, Any], kind: str | None) -> Param:
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: a range needs both low and high (or give choices: [...])")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"{where}: {name} must be a number, not {value!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, not {log!r}")
    if not low < high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low > 0, not {low}")
    if log and step is not None:
        raise ConfigError(f"{where}: a log scale takes no step")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step must be positive, not {step}")
    whole = all(isinstance(v, int) for v in (low, high, step) if v is not None)
    kind = kind or ("int" if whole else "float")
    if kind == "int" and not whole:
        raise ConfigError(f"{where}: an int range needs whole-number low, high and step")
    return Param(key, kind, low, high, log, step)


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
    values = {}
    for p in params:
        if p.type == "categorical":
            values[p.key] = trial.suggest_categorical(p.key, list(p.choices))
        elif p.type == "int":
            values[p.key] = trial.suggest_int(
                p.key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
            )
        else:
            values[p.key] = trial.suggest_float(p.key, float(p.low), float(p.high), step=p.step, log=p.log)
    return values
