"""Entry-point helpers shared by the thin scripts in src/."""

from __future__ import annotations

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


def check_overrides(args: list[str], config_dir: Path, config_name: str) -> None:
    """Compose the command line's overrides (a sweep's once per value) before Hydra starts, so that an
    unknown key, group choice or bad syntax stops it in Hydra's own words on one line (exit 2), with
    no run directory: Hydra itself prints them over several lines and exits 1."""
    if option(args, "-cn", "--config-name") or option(args, "-cd", "--config-dir"):
        return  # a DVC stage (-cn stage, -cn stage_config): DVC passes no overrides
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    given = [arg for arg in args if "=" in arg and not arg.startswith("-") and not arg.startswith("hydra")]
    try:
        choices = [v for v in (each_value(o) for o in OverridesParser.create().parse_overrides(given)) if v]
        first = [values[0] for values in choices]
        others = [[*first[:i], v, *first[i + 1 :]] for i, values in enumerate(choices) for v in values[1:]]
        for job in [first, *others]:  # each first value, then each other value of a sweep once
            composed(config_dir, config_name, job, resolve=False)
    except (HydraException, OmegaConfBaseException) as err:
        text = str(err).split("\nConfig search path:")[0].replace(":\n\t", ": ").replace("\n\t", ", ")
        raise ConfigError(" ".join(text.split())) from None


def each_value(override: Any) -> list[str]:
    """`key=value` once per value of a sweep (none for an interval, which only a sweeper samples)."""
    if not override.is_sweep_override():
        return [override.input_line]
    try:
        return [f"{override.get_key_element()}={value}" for value in override.sweep_string_iterator()]
    except Exception:
        return []


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
    """The pipeline's first stage: write the whole config the later stages run, resolved, to
    paths.stage_config (they depend on it: they rerun when a value changes, and a comment or an unused
    file under conf/ reruns nothing), after checking that params.yaml's knobs are not stale.

    `dvc repro` runs on params.yaml, which `dvc exp run` composes from conf/ (and its -S): knobs that
    differ from conf/'s are an experiment's, or an edit of params.yaml, and run as they are, unless
    conf/'s knobs changed since params.yaml was composed (paths.conf_knobs records what they were):
    then one line names the keys and the command that composes them."""
    if not (params := project / "params.yaml").is_file():
        raise ConfigError("params.yaml is missing: run `dvc exp run` (it composes conf/'s knobs into it)")
    config = stage_config(project)
    record = project / config["paths"]["conf_knobs"]
    knobs, now = yaml.safe_load(params.read_text()), composed(project / "conf", KNOBS_CONFIG)
    recorded = yaml.safe_load(record.read_text()) if record.is_file() else knobs
    if not os.environ.get(DVC_EXP_NAME) and knobs != now and recorded != now:
        changed = differing_keys(recorded, now)
        shown = ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changed[:3])
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        raise ConfigError(
            f"conf/ changed knobs since params.yaml was composed from it: {shown}{more}. `dvc repro` runs "
            "on params.yaml, and `dvc exp run` composes it: run `dvc exp run` to train what conf/ says"
        )
    target = project / config["paths"]["stage_config"]
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(record, yaml.safe_dump(now, sort_keys=False))
    atomic.write_text(target, yaml.safe_dump(config, sort_keys=False))
    return target


def preflight(config_dir: Path, config_name: str = "config") -> None:
    """Checks on the command line that must fail before Hydra starts (exit 2, one line); then the
    libraries' noise is turned off for the whole command (its MLflow artifact bars too, which only
    an environment variable turns off)."""
    quiet_libraries()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    exit_on_user_error(check_overrides)(sys.argv[1:], config_dir, config_name)


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
