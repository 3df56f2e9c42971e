"""A search, start to end: check the space, open the study, open its MLflow run, run the trials
(here, or in search.workers processes), then report and make the winner. Rerun, it continues the
study to its total; on several machines, each runs the same command (docs/search.md)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from digitpipe import atomic, interrupts
from digitpipe.config.settings import validate
from digitpipe.errors import ConfigError, TrackingError
from digitpipe.paths import resolve
from digitpipe.tracking.metadata import flatten_config
from digitpipe.training.resume import is_result_key
from digitpipe_search.report import figures, summary
from digitpipe_search.space import config_groups, corner, overrides, parse_space
from digitpipe_search.study import PARENT_ATTR, counts, finished, open_study, redacted, storage_url
from digitpipe_search.trials import Objective
from digitpipe_search.winner import make_winner
from digitpipe_search.workers import run_copies, run_trials

WINNER_ATTR = "winner_run_id"
COUNTS = (("n_trials", 1), ("workers", 1), ("heartbeat_s", 1), ("grace_s", 1), ("max_retries", 0),
          ("startup_trials", 0), ("warmup_epochs", 0), ("sampler_seed", 0))  # fmt: skip  # whole, at least


def search(
    cfg: DictConfig, fixed: list[str], config_dir: Path, compose: Callable[[list[str]], DictConfig]
) -> dict:
    """Run the study cfg.search describes; its summary (reports/search.json) once it is complete."""
    s, groups, url = cfg.search, config_groups(config_dir), storage_url(cfg.search.storage)
    check_settings(s)
    space = parse_space(s.space)
    name = check_name(str(s.study or s.name))
    check_trials(space, fixed, config_dir, compose)
    from digitpipe.tracking.store import check_sqlite_file, tracking_uri

    check_sqlite_file(tracking_uri(cfg.mlflow.tracking_uri))  # a damaged store: before the study exists
    with interrupts.handled():
        # storage errors: before any MLflow run; the study's identity: its space and the config
        # around it (every setting that changes a result, not where runs are logged)
        study = open_study(s, name, space, trained_config(compose(fixed), space))
        from digitpipe.tracking.run import recorded
        from digitpipe.tracking.store import open_store

        store = open_store(cfg.mlflow)
        parent = study_run(store, study, s, name, owner=bool(s.finalize))
        with recorded(parent if s.finalize else None):
            print(f"study {name!r} in {redacted(url)}: {finished(study)}/{s.n_trials} trials done; "
                  f"MLflow run {parent.run_id}", flush=True)  # fmt: skip
            codes: list[int] = []
            if int(s.workers) == 1:
                objective = Objective(name, space, fixed, compose, resolve(s.outputs.work_dir) / name,
                                      parent.run_id, int(s.n_trials), groups, url)  # fmt: skip
                run_trials(study, objective, store.client, s, url)
            else:
                stopped_by(codes := run_copies(int(s.workers)))
            if (done := finished(study)) < int(s.n_trials) and any(codes):
                raise TrackingError(
                    f"{sum(map(bool, codes))} search worker(s) failed (exit codes {codes}); their lines "
                    "above say why. The study keeps every finished trial: the same command continues it"
                )
            if done < int(s.n_trials) or not s.finalize:
                print(
                    f"{done}/{s.n_trials} trials done; {counts(study)['RUNNING']} running elsewhere",
                    flush=True,
                )
                return {}
            return finalize(cfg, study, fixed, parent, compose, groups)


def check_settings(s: DictConfig) -> None:
    """The search's counts are whole numbers in range, in one line, before anything opens."""
    for key, least in COUNTS:
        value = s.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"search.{key} must be a whole number of at least {least}, not {value!r}")


def check_name(name: str) -> str:
    """The study's name, which also names its folder under search.outputs.work_dir."""
    if not name.strip() or set(name) & {"/", "\\", "\0"} or name in (".", "..") or len(name) > 120:
        raise ConfigError(
            f"search.study={name!r} cannot name a study: give 1-120 characters, without / or \\, "
            "not . or .. (it also names the study's folder)"
        )
    return name


def trained_config(cfg: DictConfig, space: dict) -> dict:
    """What every trial trains with besides its point: each setting that changes a result, outside
    the space (a config group in the space takes its keys with it)."""
    return {
        k: v if isinstance(v, str | int | float | bool) or v is None else str(v)
        for k, v in flatten_config(cfg).items()
        if is_result_key(k) and not any(k == key or k.startswith(f"{key}.") for key in space)
    }


def check_trials(space: dict, fixed: list[str], config_dir: Path, compose) -> None:
    """Every key is a config key or group, each group's choice has its file, and the space's two
    corners compose and pass the config's checks, before any run or trial exists (one line
    naming the key otherwise)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    groups = config_groups(config_dir)
    for key in groups & space.keys():  # a null choice is ~group, composed with a corner below
        known = sorted(p.stem for p in (config_dir / key).glob("*.yaml"))
        if bad := [c for c in getattr(space[key], "choices", ()) if c is not None and str(c) not in known]:
            raise ConfigError(f"search.space.{key}: {key}={bad[0]} is not a known choice; choose one of: "
                              f"{', '.join(known)}")  # fmt: skip
    for end in (0, -1):
        point = overrides(corner(space, end), groups)
        try:
            cfg = compose([*fixed, *point])
        except (HydraException, OmegaConfBaseException) as err:
            bad = next((key for key in space if key in str(err)), None)
            what = f"search.space.{bad} is not a key of the config" if bad else str(err).splitlines()[0]
            raise ConfigError(
                f"{what}; the space's keys are config keys (optimizer.lr) or groups (optimizer)"
            ) from err
        try:
            validate(cfg)
        except ConfigError as err:
            raise ConfigError(
                f"the search space's corner {' '.join(point)} is not a valid config: {err}"
            ) from err
        if cfg.trainer.strategy != "auto" or int(cfg.trainer.devices) != 1 or int(cfg.trainer.num_nodes) != 1:
            raise ConfigError(
                "a search trains each trial in one process on one device; for more at once, "
                "set search.workers (one trial per GPU) instead of a DDP trainer"
            )


def study_run(store, study, s: DictConfig, name: str, owner: bool):
    """The study's one MLflow run: made by its first search, continued by every later one."""
    from mlflow.exceptions import MlflowException

    from digitpipe.tracking.metadata import run_tags
    from digitpipe.tracking.run import TrackedRun

    if run_id := study.user_attrs.get(PARENT_ATTR):
        try:
            return TrackedRun.reopen(store, run_id)[0] if owner else TrackedRun(store, run_id)
        except (MlflowException, TrackingError):
            pass  # deleted, or in another store: a new one
    tags = {
        **run_tags(),
        "search.study": name,
        "search.storage": redacted(storage_url(s.storage)),
        "search.space": json.dumps(study.user_attrs.get("space"))[:5000],
        "search.pruner": str(s.pruner),
    }
    run = TrackedRun.create(store, f"search: {name}", tags)
    study.set_user_attr(PARENT_ATTR, run.run_id)
    return run


def stopped_by(codes: list[int]) -> None:
    """A worker that was asked to stop (SIGINT/SIGTERM: 130/143) stops the search; one that died
    otherwise (kill -9) only says so, as its trial is retried by the others."""
    for index, code in enumerate(codes, start=1):
        if code in (130, 143):
            raise interrupts.Interrupted(code - 128)
        if code:
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            print(f"note: worker {index} ended with {how}", file=sys.stderr, flush=True)


def finalize(cfg: DictConfig, study, fixed: list[str], parent, compose, groups: frozenset[str]) -> dict:
    """The summary, the figures and the best overrides, into the study's run and reports/; then the
    winner trained, tested and registered (unless search.train_winner=false, as in the DVC
    pipeline, whose own stage makes it); then the study's run FINISHED."""
    s, client = cfg.search, parent.client
    report = {**summary(study, s, fixed, groups), "mlflow_run_id": parent.run_id}
    best = report["best"]
    if best is None:
        raise TrackingError(
            f"study {study.study_name!r} has no complete trial to choose from (all pruned or failed)"
        )
    for file, data in figures(study).items():
        atomic.write_bytes(resolve(s.outputs.figures) / file, data)
        client.log_artifact(parent.run_id, str(resolve(s.outputs.figures) / file), "figures")
    atomic.write_json(resolve(s.outputs.summary), report)
    client.log_artifact(parent.run_id, str(resolve(s.outputs.summary)))
    client.log_metric(parent.run_id, "best/val_acc", best["val_acc"])
    for state, n in report["trials"].items():
        client.log_metric(parent.run_id, f"trials/{state}", n)
    print(
        f"best: trial {best['trial']}, val/acc {best['val_acc']:.4f}: "
        f"{' '.join(best['overrides'][len(fixed) :])}",
        flush=True,
    )
    if s.train_winner:
        made = study.user_attrs.get(WINNER_ATTR, {})
        if made.get("trial") != best["trial"]:
            winner_dir = resolve(s.outputs.work_dir) / study.study_name / "winner"
            result = make_winner(compose, best, study.study_name, winner_dir, parent.run_id)
            study.set_user_attr(WINNER_ATTR, {"trial": best["trial"], "run_id": result["run_id"]})
            client.set_tag(parent.run_id, "search.winner_run_id", str(result["run_id"]))
            print(
                f"winner: run {result['run_id']}, val/acc {result['best/val_acc']:.4f}, "
                f"test/acc {result.get('test/acc', float('nan')):.4f}",
                flush=True,
            )
        else:
            print(f"winner: already made, run {made['run_id']}", flush=True)
    parent.finish()
    return report
