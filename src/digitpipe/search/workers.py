"""Workers: each runs trials one after another until the study has its total, taking a failed
worker's trial back first. N of them on one machine are N processes (one GPU each where there are
GPUs, the cores divided where there are none); on many machines, the same command on each one,
pointed at one storage (Optuna's own design: the study in the database is all they share)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from digitpipe import interrupts
from digitpipe.errors import TrackingError, UserError
from digitpipe.search.space import config_groups
from digitpipe.search.study import FINISHED, counts
from digitpipe.search.trials import (
    CAUGHT,
    DIVERGED_ATTR,
    FAIL_ATTR,
    RUN_ATTR,
    STATE_TAG,
    Objective,
    TrialStopped,
    end_child_run,
)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs, picklable: it composes and opens the rest itself."""

    config_dir: str
    search: dict  # cfg.search, resolved
    mlflow: dict  # cfg.mlflow, resolved: the store the trials' runs go to
    study_name: str
    params: list  # list[Param]
    fixed: list[str]
    parent_run_id: str | None
    work_dir: str
    index: int = 0
    threads: int | None = None  # torch's intra-op threads (CPU workers share the cores)


def run_trials(spec: WorkerSpec, compose: Callable[[list[str]], DictConfig] | None = None) -> None:
    """Trials until the study has search.n_trials finished ones (complete or pruned) and none runs."""
    import optuna
    import torch

    from digitpipe.search.study import load_study
    from digitpipe.tracking.store import open_store

    if spec.threads:
        torch.set_num_threads(spec.threads)
    search = OmegaConf.create(spec.search)
    study = load_study(search, spec.study_name, spec.index)
    store = open_store(OmegaConf.create(spec.mlflow))
    total = int(search.n_trials)
    objective = Objective(
        spec.study_name,
        spec.params,
        spec.fixed,
        compose or hydra_composer(spec.config_dir),
        Path(spec.work_dir),
        spec.parent_run_id,
        total,
        config_groups(Path(spec.config_dir)),
    )
    ended = trial_ended(store.client, total, spec.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        while True:
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial: FAIL, and queued again
            close_stale_runs(study, store.client, float(search.grace_s))
            tally = counts(study)
            if (failed := len(failures(study))) >= max(total, 3):
                raise TrackingError(
                    f"{failed} trials of study {spec.study_name!r} failed; see their runs' "
                    "end_reason tags in MLflow, fix the cause, and run the search again"
                )
            if tally["WAITING"] or sum(tally[s] for s in FINISHED) + tally["RUNNING"] < total:
                try:
                    study.optimize(
                        objective, n_trials=1, catch=CAUGHT, callbacks=[ended], gc_after_trial=False
                    )
                except TrialStopped as stop:
                    raise stop.interrupted from None
                continue
            if not tally["RUNNING"]:
                return
            time.sleep(float(search.heartbeat_s))  # the last trials run elsewhere; one may need a retry


def close_stale_runs(study, client, grace_s: float) -> None:
    """The MLflow run of a trial failed for want of a heartbeat (its worker died): FAILED, with why."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_id = t.user_attrs.get(RUN_ATTR)
        if not run_id or FAIL_ATTR in t.user_attrs:  # failed by itself: train() ended its run
            continue
        reason = f"its worker sent no heartbeat for {grace_s:g} s (killed?); retried with the same params"
        try:
            if client.get_run(run_id).data.tags.get(STATE_TAG) != "FAIL":
                end_child_run(client, run_id, "FAIL", reason)
        except Exception as err:  # the store unreachable now: the next worker loop tries again
            print(f"note: could not close run {run_id} of failed trial {t.number}: {err}", file=sys.stderr)


def failures(study) -> list:
    """Trials that failed by themselves: not a killed worker's (retried), a signal's, or a surplus one."""
    from optuna.trial import TrialState

    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if t.user_attrs.get(FAIL_ATTR)
        and not t.user_attrs.get("surplus")
        and not t.user_attrs[FAIL_ATTR].startswith("stopped:")
    ]


def trial_ended(client, total: int, index: int) -> Callable[[Any, Any], None]:
    """Optuna's callback after each trial: its state onto its MLflow run, and one line."""

    def ended(study, trial) -> None:
        state = trial.state.name
        reason = trial.user_attrs.get(FAIL_ATTR, "").splitlines()[0:1]
        run_id = trial.user_attrs.get(RUN_ATTR)
        pruned_at = max(trial.intermediate_values, default=None)
        last = trial.intermediate_values.get(pruned_at, float("nan"))
        detail = {
            "COMPLETE": f"val/acc {trial.value:.4f}" if trial.value is not None else "",
            "PRUNED": trial.user_attrs.get(DIVERGED_ATTR) or f"at epoch {pruned_at} (val/acc {last:.4f})",
            "FAIL": reason[0] if reason else "",
        }.get(state, "")
        if run_id:
            try:
                pruned = state == "PRUNED" and DIVERGED_ATTR not in trial.user_attrs  # diverged: FAILED stays
                end_child_run(client, run_id, state, f"pruned {detail}" if pruned else None)
            except Exception as err:  # the store down: the trial counts in the study all the same
                print(f"note: could not tag run {run_id} {STATE_TAG}={state}: {err}", file=sys.stderr)
        done = sum(counts(study)[s] for s in FINISHED)
        who = f"worker {index}: " if index else ""
        params = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
        )
        print(f"{who}trial {trial.number} {state} {detail} [{params}] ({done}/{total} done)", flush=True)

    return ended


def hydra_composer(config_dir: str) -> Callable[[list[str]], DictConfig]:
    """compose("config", overrides) on conf/, Hydra initialised once for this process."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        initialize_config_dir(config_dir, version_base="1.3").__enter__()  # for the process's life
    return lambda overrides: compose("config", overrides=overrides)


def worker_main(spec: WorkerSpec) -> None:
    """A worker process: its trials, then exit 0; one line and exit 2 / 130 / 143 otherwise.
    In a process group of its own: a Ctrl-C reaches it once, passed on by the command that started it."""
    os.setpgrp()
    try:
        with interrupts.handled():
            run_trials(spec)
    except UserError as err:
        print(f"error: worker {spec.index}: {err}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
    except interrupts.Interrupted as stop:
        print(f"stopped: worker {spec.index}: {stop}", file=sys.stderr, flush=True)
        sys.exit(stop.exit_code)


def placements(workers: int) -> list[tuple[dict[str, str], int | None]]:
    """Per worker: the environment it starts with and its torch threads. One GPU each where there are
    GPUs (round robin); the cores divided where there are none."""
    import torch

    gpus = torch.cuda.device_count()
    if gpus:
        return [({"CUDA_VISIBLE_DEVICES": str(i % gpus)}, None) for i in range(workers)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return [({}, max(1, cores // workers)) for _ in range(workers)]


def run_workers(spec: WorkerSpec, workers: int) -> list[int]:
    """`workers` processes on the study; their exit codes. A SIGINT/SIGTERM here is passed to each."""
    context = multiprocessing.get_context("spawn")
    processes = []
    for index, (env, threads) in enumerate(placements(workers), start=1):
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            process = context.Process(
                target=worker_main,
                name=f"search-worker-{index}",
                args=(WorkerSpec(**{**spec.__dict__, "index": index, "threads": threads}),),
            )
            process.start()
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        processes.append(process)

    def forward(signum: int) -> None:
        for process in processes:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signum)

    undo = interrupts.forward_to(forward)
    try:
        for process in processes:
            process.join()
    except interrupts.Interrupted:
        for process in processes:  # each marks its trial FAIL and exits within seconds
            process.join(timeout=60)
        raise
    finally:
        undo()
    return [p.exitcode for p in processes]
