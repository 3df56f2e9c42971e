"""One attempt at a training: the MLflow run it starts or continues, its checkpoint directory held
while it runs, and, when it stops early, the run marked and one line on what became of both."""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from digitpipe import interrupts
from digitpipe.errors import DivergedError, RankFailed, TrackingError
from digitpipe.paths import resolve
from digitpipe.tracking.metadata import run_name, run_tags
from digitpipe.tracking.run import TrackedRun, close_dead_runs, recorded
from digitpipe.tracking.store import open_store, store_failures
from digitpipe.tracking.sweep import parent_tags
from digitpipe.training.publish import check_writable
from digitpipe.training.resume import Plan, identity, plan_start
from digitpipe.training.run_dir import RunDir


@dataclass(frozen=True)
class Attempt:
    run: TrackedRun | None  # None on the DDP ranks other than 0, which record nothing
    run_dir: RunDir
    checkpoint: Path | None  # the last checkpoint of the interrupted training it continues

    @property
    def is_new(self) -> bool:
        return self.checkpoint is None


@contextlib.contextmanager
def attempt(cfg: DictConfig) -> Iterator[Attempt]:
    """Global rank 0 decides whether this continues an interrupted training (`resume`), holds its
    directory, and opens its run; the other DDP ranks follow its decision and open nothing."""
    owner = rank_zero_only.rank == 0
    root = resolve(cfg.paths.checkpoints)
    if owner:
        paths = cfg.paths
        check_writable([root, resolve(paths.model_dir), *{resolve(p).parent for p in
                        (paths.history, paths.train_metrics, paths.run_info)}])  # fmt: skip
    plan = plan_start(cfg.resume, root, identity(cfg), is_launcher=owner)
    with contextlib.ExitStack() as held:
        if owner and plan.run_dir:  # held first: two trainings may pick the same interrupted run
            held.enter_context(plan.run_dir.held())
        run = open_run(cfg, plan) if owner else None
        run_dir = plan.run_dir or RunDir(root / (run.run_id if run else "rank"))  # other ranks never write
        if owner and not plan.run_dir:
            held.enter_context(run_dir.held())
        with explained(run, run_dir, resumable=cfg.resume is not False), recorded(run):
            yield Attempt(run, run_dir, plan.checkpoint)


def open_run(cfg: DictConfig, plan: Plan) -> TrackedRun:
    """The store made ready, runs of dead processes closed, then this training's run, new or reopened."""
    for notice in plan.notices:
        print(f"note: {notice}", file=sys.stderr, flush=True)
    store = open_store(cfg.mlflow)
    with store_failures(store.uri, "opening the run"):
        close_dead_runs(store.client)
        if plan.run_dir is None:
            return TrackedRun.create(store, run_name(cfg), {**run_tags(), **parent_tags(), **extra_tags(cfg)})
        run, sent = TrackedRun.reopen(store, plan.run_dir.run_id, plan.run_dir.unsent)
    unsent = f" ({sent} unsent metrics sent)" if sent else ""
    print(f"resuming run {run.run_id} from {plan.checkpoint}{unsent}{why_resumed(cfg.resume)}", flush=True)
    return run


def why_resumed(mode) -> str:
    """resume=auto (the default) continues a training the user may have meant to start again: say
    so, with the override that does."""
    if mode != "auto":
        return ""  # resume=true or a run id: asked for
    return " (resume=auto found it interrupted, with this config and code; resume=false starts a new run)"


def extra_tags(cfg: DictConfig) -> dict[str, str]:
    """mlflow.tags as given, and mlflow.parent_run_id as MLflow's parent tag (a search's trials)."""
    tags = {str(k): str(v) for k, v in (cfg.mlflow.get("tags") or {}).items()}
    if parent := cfg.mlflow.get("parent_run_id"):
        tags["mlflow.parentRunId"] = str(parent)
    return tags


@contextlib.contextmanager
def explained(run: TrackedRun | None, run_dir: RunDir, resumable: bool = True) -> Iterator[None]:
    """Say, in the one line the CLI prints, what became of an interrupted or failed run (a training
    with resume=false, as a search's trials and winner, promises no resume)."""
    kept = f"its checkpoints are kept in {run_dir.path}/ and the same command resumes it"
    if not resumable:
        kept = "resume=false: the same command starts it again"
    try:
        yield
    except interrupts.Interrupted as stop:
        if run is not None:
            stop.detail = f"run {run.run_id} marked {run.status}; {kept}"  # FAILED if that came first
        raise
    except TrackingError as err:
        raise TrackingError(f"{err}; {kept}") from err
    except DivergedError:
        if run is not None:
            shutil.rmtree(run_dir.path, ignore_errors=True)  # resuming it would only diverge again
        raise
    except RankFailed as err:
        raise RankFailed(f"{err}; run {run.run_id} marked FAILED; {kept}" if run else str(err)) from err
