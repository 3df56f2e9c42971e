"""The Optuna study a search adds to: its storage (a file by default, PostgreSQL for many machines),
its sampler and pruner, and the check that a rerun searches the same space as the study's first run."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from digitpipe.errors import ConfigError, TrackingError
from digitpipe.paths import project_root
from digitpipe.search.space import Param

DEFAULT_STORAGE = "optuna.db"  # in the project root, beside mlflow.db: no server needed
FINISHED = ("COMPLETE", "PRUNED")  # what counts towards search.n_trials
PRUNERS = ("median", "hyperband", "none")
SPACE_ATTR, FIXED_ATTR, PARENT_ATTR = "space", "fixed_overrides", "mlflow_parent_run_id"


def storage_url(configured: str | None) -> str:
    return configured or f"sqlite:///{project_root() / DEFAULT_STORAGE}"


def redacted(url: str) -> str:
    """The storage URL without its password (what tags, logs and reports show)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def open_storage(search: DictConfig):
    """The study's RDB storage with Optuna's heartbeat (a killed worker's trial is failed after
    grace_s and retried with the same params), or a one-line TrackingError when it cannot be opened."""
    import optuna
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    url = storage_url(search.storage)
    try:
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's API
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=int(search.heartbeat_s),
            grace_period=int(search.grace_s),
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=int(search.max_retries)
            ),
            engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
        )
    except (SQLAlchemyError, ArgumentError, ModuleNotFoundError, ValueError) as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise TrackingError(
            f"cannot open the search's storage {redacted(url)}: {reason}; check search.storage "
            "(host, port, user, password, database), or leave it null for the file in the project root"
        ) from err


@dataclass(frozen=True)
class StudyOpened:
    study: Any  # optuna.Study
    new: bool


def open_study(search: DictConfig, name: str, params: list[Param], fixed: list[str]) -> StudyOpened:
    """Create the study, or load it and refuse when its space or fixed overrides differ."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial is reported in one line instead
    logging.getLogger("optuna").propagate = False
    storage = open_storage(search)
    space = {p.key: p.as_dict() for p in params}
    exists = name in {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=make_sampler(search), pruner=make_pruner(search),
    )  # fmt: skip
    if not exists or SPACE_ATTR not in study.user_attrs:
        study.set_user_attr(SPACE_ATTR, space)
        study.set_user_attr(FIXED_ATTR, fixed)
        return StudyOpened(study, True)
    check_same_search(name, study.user_attrs, space, fixed)
    return StudyOpened(study, False)


def check_same_search(name: str, attrs: Mapping[str, Any], space: dict, fixed: list[str]) -> None:
    """A study's trials are comparable only over one space with one set of fixed settings."""
    before, was_fixed = attrs[SPACE_ATTR], attrs.get(FIXED_ATTR, [])
    changes = [
        f"{key}: {describe(before.get(key))} in the study, {describe(space.get(key))} now"
        for key in [*before, *(k for k in space if k not in before)]
        if before.get(key) != space.get(key)
    ]
    if sorted(was_fixed) != sorted(fixed):
        changes.append(
            f"fixed overrides: {' '.join(was_fixed) or 'none'} in the study, {' '.join(fixed) or 'none'} now"
        )
    if changes:
        raise ConfigError(
            f"study {name!r} was made with another search: {'; '.join(changes)}. Give this search its "
            f"own name (search.study=...), or run the study's own space and overrides to continue it"
        )


def describe(spec: dict | None) -> str:
    if spec is None:
        return "absent"
    if spec["type"] == "categorical":
        return f"choices {spec['choices']}"
    scale = " log" if spec.get("log") else ""
    return f"{spec['type']} [{spec['low']}, {spec['high']}]{scale}" + (
        f" step {spec['step']}" if spec.get("step") else ""
    )


def load_study(search: DictConfig, name: str, worker: int = 0):
    """The study as a worker sees it: this search's pruner, and TPE seeded with sampler_seed + the
    worker's index (workers seeded alike would sample the same points side by side)."""
    import optuna

    return optuna.load_study(study_name=name, storage=open_storage(search),
                             sampler=make_sampler(search, worker), pruner=make_pruner(search))  # fmt: skip


def make_sampler(search: DictConfig, worker: int = 0):
    import optuna

    return optuna.samplers.TPESampler(
        seed=int(search.sampler_seed) + worker, n_startup_trials=int(search.startup_trials)
    )


def make_pruner(search: DictConfig):
    import optuna

    kind = str(search.pruner)
    if kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(search.startup_trials), n_warmup_steps=int(search.warmup_epochs)
        )
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, int(search.warmup_epochs)))
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"search.pruner={kind} is not one of {', '.join(PRUNERS)}")


def counts(study) -> Counter:
    """Trials by state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def finished(study) -> int:
    tally = counts(study)
    return sum(tally[s] for s in FINISHED)


def settings_dict(search: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(search, resolve=True)
