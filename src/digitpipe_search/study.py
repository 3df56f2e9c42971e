"""The Optuna study a search adds to: its storage (a file by default, PostgreSQL for many machines),
its sampler and pruner, and the check that a rerun searches the same space, with the same config
around it, as the study's first run."""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections import Counter
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

from digitpipe.errors import ConfigError, TrackingError
from digitpipe.paths import project_root
from digitpipe_search.space import stored

DEFAULT_STORAGE = "optuna.db"  # in the project root, beside mlflow.db: no server needed
FINISHED = ("COMPLETE", "PRUNED")  # what counts towards search.n_trials
SPACE_ATTR, CONFIG_ATTR, PARENT_ATTR = "space", "config", "mlflow_parent_run_id"


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
    grace_s and retried with the same params), or a one-line TrackingError when it cannot be opened.
    Two searches that start together on a new storage both create its tables: the loser retries."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

    url = storage_url(search.storage)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat's API
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=int(search.heartbeat_s),
                grace_period=int(search.grace_s),
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=int(search.max_retries)
                ),
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
            )
        except (SQLAlchemyError, ModuleNotFoundError) as err:  # a bad URL too (ArgumentError)
            lost_race = isinstance(err, IntegrityError | ProgrammingError) or "already exists" in str(err)
            if not lost_race or attempt == 4:  # else another process's CREATE TABLE won: again
                raise storage_failure(url, err, "cannot open") from err
            time.sleep(0.5 + attempt)


def storage_failure(url: str, err: BaseException, what: str = "lost") -> TrackingError:
    """One line for a storage that cannot be opened, or that stopped answering mid-search (a server
    stopped, a full disk): the database's own words, not Optuna's guess about them."""
    cause = err
    while cause.__cause__ is not None or getattr(cause, "orig", None) is not None:
        cause = getattr(cause, "orig", None) or cause.__cause__
    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if what == "cannot open":
        return TrackingError(
            f"cannot open the search's storage {redacted(url)}: {reason}; check search.storage (host, "
            "port, user, password, database), or leave it null for the file in the project root"
        )
    lost = TrackingError(
        f"the search's storage {redacted(url)} stopped answering: {reason}. The study keeps every "
        "finished trial: once the database answers (and has space), the same command continues it"
    )
    lost.store_answers = True  # MLflow's store does: the trial's run is marked FAILED with this line
    return lost


def storage_cause(err: BaseException) -> BaseException | None:
    """The storage's failure behind `err`, if one is: Optuna raises its own AssertionError ("Should
    not reach.") when it cannot record a trial's end, with the storage's error as its context."""
    seen = err
    while seen is not None:
        if isinstance(seen, storage_errors()):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def storage_errors() -> tuple[type[BaseException], ...]:
    """What Optuna and SQLAlchemy raise when the database fails under a running search."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    return (StorageInternalError, SQLAlchemyError)


def open_study(search: DictConfig, name: str, space: dict[str, Any], config: dict[str, Any]):
    """Create the study, or load it and refuse when its space, or the config its trials train with
    (`config`: every setting that changes a result, outside the space), differs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial is reported in one line instead
    logging.getLogger("optuna").propagate = False
    storage = open_storage(search)
    try:
        study = optuna.create_study(
            study_name=name, storage=storage, direction="maximize", load_if_exists=True,
            sampler=make_sampler(search), pruner=make_pruner(search),
        )  # fmt: skip
        if SPACE_ATTR in study.user_attrs:
            check_same_search(name, study.user_attrs, stored(space), config)
            return study
        study.set_user_attr(SPACE_ATTR, stored(space))
        study.set_user_attr(CONFIG_ATTR, config)
    except storage_errors() as err:
        raise storage_failure(storage_url(search.storage), err) from err
    return study


def check_same_search(name: str, attrs: Mapping[str, Any], space: dict, config: dict[str, Any]) -> None:
    """A study's trials are comparable only over one space, each trained with one config around it."""
    before, was = attrs[SPACE_ATTR], attrs.get(CONFIG_ATTR, {})
    changes = [
        f"{key}: {describe(before.get(key))} in the study, {describe(space.get(key))} now"
        for key in [*before, *(k for k in space if k not in before)]
        if before.get(key) != space.get(key)
    ]
    changes += [
        f"{key}={was.get(key, '(unset)')!r} in the study, {config.get(key, '(unset)')!r} now"
        for key in sorted(was.keys() | config.keys())
        if was.get(key) != config.get(key)
    ]
    if changes:
        shown = "; ".join(changes[:4]) + (f" (and {len(changes) - 4} more)" if len(changes) > 4 else "")
        raise ConfigError(
            f"study {name!r} was made with another search: {shown}. Give this search its own name "
            "(search.study=...) to start a new study, or run the study's own space and config to continue it"
        )


def describe(spec: dict | None) -> str:
    """A stored distribution as Optuna writes it: FloatDistribution(high=0.1, log=True, low=0.001, ...)."""
    from optuna.distributions import json_to_distribution

    return repr(json_to_distribution(json.dumps(spec))) if spec else "absent"


def make_sampler(search: DictConfig):
    """TPE whose random numbers for trial n are seeded from (sampler_seed, n): every process on the
    study, and every rerun, samples its own points (each trial number is taken once, by one
    process), while one process from the start still reproduces the study point for point.
    A TPE seeded once per process drew the same points in every process and in every rerun."""
    import optuna

    class TrialSeededTPE(optuna.samplers.BaseSampler):
        def __init__(self, seed: int, startup_trials: int) -> None:
            self.seed, self.startup_trials = seed, startup_trials
            self.tpe = self.for_trial(0)

        def for_trial(self, number: int) -> optuna.samplers.TPESampler:
            seed = (self.seed * 1_000_003 + number) % 2**32
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.startup_trials)

        def before_trial(self, study, trial) -> None:
            self.tpe = self.for_trial(trial.number)
            self.tpe.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self.tpe.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self.tpe.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self.tpe.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values) -> None:
            self.tpe.after_trial(study, trial, state, values)

    return TrialSeededTPE(int(search.sampler_seed), int(search.startup_trials))


def make_pruner(search: DictConfig):
    """The median pruner waits for startup_trials trials, then prunes from epoch warmup_epochs on."""
    import optuna

    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(int(search.startup_trials), int(search.warmup_epochs)),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=max(1, int(search.warmup_epochs))),
        "none": optuna.pruners.NopPruner,
    }
    if str(search.pruner) not in pruners:
        raise ConfigError(f"search.pruner={search.pruner} is not one of {', '.join(pruners)}")
    return pruners[str(search.pruner)]()


def counts(study) -> Counter:
    """Trials by state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def finished(study) -> int:
    tally = counts(study)
    return sum(tally[s] for s in FINISHED)
