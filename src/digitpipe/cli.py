"""Entry-point helpers shared by the thin scripts in src/."""

from __future__ import annotations

import difflib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from digitpipe import atomic
from digitpipe.environment import DVC_EXP_NAME
from digitpipe.errors import ConfigError, exit_on_user_error


def hydra_version_base() -> Any:
    """What `version_base=` of @hydra.main and initialize_config_dir gets: "1.3" on Hydra 1.3 (left
    out, Hydra 1.3 falls back to 1.1's defaults, which chdir into the run directory); on Hydra 1.4
    (Python 3.14 needs it) Hydra's own 'not given', since 1.4 keeps 1.3's behaviour, deprecates the
    argument and warns about every value passed (Hydra15MigrationWarning)."""
    from hydra import __version__, version

    major, minor = (int(part) for part in __version__.split(".")[:2])
    return version._UNSPECIFIED_ if (major, minor) >= (1, 4) else "1.3"


VERSION_BASE = hydra_version_base()

# Lines that libraries print on every training and that a user can do nothing about
NOISE_WARNINGS = (
    # Lightning, when SLURM's srun is installed but did not start this process (twice a training);
    # docs/distributed.md says how to run under SLURM
    r"The `srun` command is available on your system but is not used",
    # torch deprecated LeafSpec; Lightning 2.6's own _pytree.py still uses it
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # Hydra 1.4 (Python 3.14) on each instantiate() of conf/'s own _target_s (optimizer, scheduler,
    # callbacks, trainer strategy): an error only from Hydra 1.5 on, when an execution whitelist
    # must be passed where they are instantiated
    r"hydra.utils.instantiate\(\) resolved _target_='[^']*' with no\s+_execution_whitelist_",
)
NOISE_LOGS = {  # logger: what its unwanted records say
    "lightning.pytorch.utilities.rank_zero": "litlogger",  # an advert for Lightning's cloud logger
    # on logging the model of a +cpu torch: MLflow says it wrote torch==2.13.0, but with packaging 26
    # its strip is a no-op and the requirement says 2.13.0+cpu, what ran (models are served with
    # --env-manager local, which installs nothing)
    "mlflow.utils.requirements_utils": "contains a local version label",
}


class _Without(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def quiet_libraries() -> None:
    """Drop NOISE_WARNINGS and NOISE_LOGS (idempotent: each filter is installed once)."""
    for message in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message)
    for name, text in NOISE_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Without) and f.text == text for f in logger.filters):
            logger.addFilter(_Without(text))


def check_group_choices(args: list[str], config_dir: Path) -> None:
    """Reject an unknown config-group choice (optimizer=adagrad) in one line naming the valid ones.

    Hydra would also refuse it, but over a dozen lines of search-path details.
    """
    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            override = parser.parse_override(arg)
        except Exception:  # a syntax error: Hydra reports those itself
            continue
        group = config_dir / override.key_or_group
        if not group.is_dir():
            continue
        choices = sorted(p.stem for p in group.glob("*.yaml"))
        sweep = override.is_sweep_override()
        values = list(override.sweep_string_iterator()) if sweep else [override.value()]
        for value in values:
            if value is not None and str(value) not in (*choices, "null"):
                key, valid = override.key_or_group, ", ".join(choices)
                raise ConfigError(f"{key}={value} is not a known choice; choose one of: {valid}")


def check_known_keys(args: list[str], config_dir: Path, config_name: str) -> None:
    """Reject an override of a key the config does not have (`foo=1`, `optimizer.learning_rate=0.1`)
    in one line naming the nearest known keys and the `+key=value` that adds a new one.

    Hydra would also refuse it, in seven lines ending "Set the environment variable HYDRA_FULL_ERROR".
    The config is composed with the command line's group choices (optimizer=adam has its own keys).
    """
    if option(args, "-cn", "--config-name") or option(args, "-cd", "--config-dir"):
        return  # a DVC stage (-cn stage, -cn stage_config): DVC passes no key overrides
    parser = OverridesParser.create()
    groups, keys = [], []
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            override = parser.parse_override(arg)
        except Exception:  # a syntax error: Hydra reports those itself
            continue
        name = override.key_or_group
        if override.package is not None or name.startswith("hydra.") or not name[:1].isalpha():
            continue
        sweep = override.is_sweep_override()
        if (config_dir / name).is_dir():
            first = next(override.sweep_string_iterator()) if sweep else override.get_value_element_as_str()
            groups.append(f"{name}={first}")
        elif override.type.name == "CHANGE":  # not +key (add), ++key (force) or ~key (delete)
            keys.append(name)
    if not keys:
        return
    composed = compose_flat_keys(config_dir, config_name, groups)
    for key in keys:
        if key not in composed:
            near = difflib.get_close_matches(key, composed, n=3, cutoff=0.6)
            hint = f"the nearest known keys: {', '.join(near)}" if near else "--cfg job prints every key"
            raise ConfigError(f"{key} is not a config key ({hint}); to add a new key, write +{key}=...")


def compose_flat_keys(config_dir: Path, config_name: str, overrides: list[str]) -> list[str]:
    """Every dotted key (and every key that holds others) of the composed config."""
    config = composed(config_dir, config_name, overrides, resolve=False)

    def walk(node: Any, prefix: str) -> list[str]:
        if not isinstance(node, dict):
            return []
        return [k for key, value in node.items() for k in (f"{prefix}{key}", *walk(value, f"{prefix}{key}."))]

    return walk(config, "")


def option(args: list[str], short: str, long: str) -> str | None:
    """The value of `-cn NAME`, `--config-name NAME` or `--config-name=NAME` style options."""
    for i, arg in enumerate(args):
        if arg in (short, long) and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"{long}="):
            return arg.split("=", 1)[1]
    return None


def differing_keys(found: Any, expected: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, found, expected) wherever two nested configs differ; a missing key is None."""
    if isinstance(found, dict) and isinstance(expected, dict):
        keys = list(expected) + [k for k in found if k not in expected]
        return [d for k in keys for d in differing_keys(found.get(k), expected.get(k), f"{prefix}{k}.")]
    return [] if found == expected else [(prefix[:-1], found, expected)]


def composed(config_dir: Path, name: str, overrides: list[str] | None = None, resolve: bool = True) -> dict:
    """Config `name` of `config_dir` composed with `overrides`, as a plain dict."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(config_dir.resolve()), version_base=VERSION_BASE):
        return OmegaConf.to_container(compose(name, overrides=overrides or []), resolve=resolve)


STAGE_CONFIG, KNOBS_CONFIG = "stage", "dvc_params"  # conf/stage.yaml, conf/dvc_params.yaml


def stage_config(project: Path) -> dict:
    """The config the main pipeline's stages run (conf/config.yaml with params.yaml's knobs), resolved."""
    root = project.resolve()
    quoted = str(root).replace("'", "\\'")  # a path in Hydra's override grammar: quoted, any character
    return composed(root / "conf", STAGE_CONFIG, [f"hydra.searchpath=['file://{quoted}']"])


def write_stage_config(project: Path) -> Path:
    """The pipeline's first stage: refuse a params.yaml that conf/'s knobs no longer compose to
    (outside a DVC experiment), then write the whole config the later stages run, resolved, to
    paths.stage_config. They depend on that file, so they rerun when a value changes, and a comment
    or an unused file under conf/ reruns nothing."""
    if not os.environ.get(DVC_EXP_NAME):
        check_knobs_current(Path(os.path.relpath(project)) / "params.yaml", project / "conf")
    config = stage_config(project)
    target = project / config["paths"]["stage_config"]
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(target, yaml.safe_dump(config, sort_keys=False))
    return target


def check_params_current(args: list[str], config_dir: Path) -> None:
    """A stage run on params.yaml's knobs (`-cn stage`, what dvc.yaml's commands do) outside a DVC
    experiment must find there the knobs conf/ composes to: `dvc repro` reads params.yaml, which only
    `dvc exp run` rewrites, so an edited knob or a finished experiment's values would otherwise
    train silently."""
    if option(args, "-cn", "--config-name") != STAGE_CONFIG or os.environ.get(DVC_EXP_NAME):
        return
    check_knobs_current(Path(option(args, "-cd", "--config-dir") or ".") / "params.yaml", config_dir)


def check_knobs_current(params: Path, config_dir: Path) -> None:
    """`params` holds the knobs conf/ composes to (as `dvc exp run` writes them), or one line says
    which keys differ and what to run."""
    if not params.is_file():
        raise ConfigError(f"{params} is missing: run `dvc exp run` (it composes the knobs of conf/ into it)")
    found = yaml.safe_load(params.read_text())
    differences = differing_keys(found, composed(config_dir, KNOBS_CONFIG))
    if not differences:
        return
    shown = ", ".join(f"{key}={old!r} where conf/ has {new!r}" for key, old, new in differences[:3])
    more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
    raise ConfigError(
        f"{params} is not what conf/ composes to: {shown}{more}. `dvc repro` runs on params.yaml and "
        "only `dvc exp run` rewrites it from conf/: run `dvc exp run` to train what conf/ says, or "
        "`git checkout params.yaml` to drop a finished experiment's values"
    )


def preflight(config_dir: Path, config_name: str = "config") -> None:
    """Checks on the command line that must fail before Hydra starts (exit 2, one line); then the
    libraries' noise is turned off for the whole command (its MLflow artifact bars too, which only
    an environment variable turns off)."""
    quiet_libraries()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    exit_on_user_error(check_group_choices)(sys.argv[1:], config_dir)
    exit_on_user_error(check_known_keys)(sys.argv[1:], config_dir, config_name)
    exit_on_user_error(check_params_current)(sys.argv[1:], config_dir)


def log_lightning_once() -> None:
    """Print Lightning's messages once, through Hydra's handlers (the console and the job's .log).

    Importing lightning gives its logger a handler of its own ("INFO: Seed set to 42"). Imported after
    Hydra configured the root logger, as train() imports it (after the config is checked), its
    messages also propagate to Hydra's handlers, so every line came out twice.
    """
    quiet_libraries()  # here too: a search's worker processes and in-process callers of train()
    if not logging.getLogger().handlers:  # no Hydra logging (a plain import): keep Lightning's own
        return
    lightning_logger = logging.getLogger("lightning")
    for handler in list(lightning_logger.handlers):
        lightning_logger.removeHandler(handler)
