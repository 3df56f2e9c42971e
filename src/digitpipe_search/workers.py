"""A worker: trials one after another until the study has its total, a dead worker's trial taken
back first. Optuna's design, as its docs give it: N independent processes on one storage, the study
in the database all they share. On many machines that is the same command on each one (a SLURM
array, a shell loop); `search.workers=N` starts N such processes of this same command here."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from digitpipe import interrupts
from digitpipe.errors import TrackingError
from digitpipe_search.study import FINISHED, counts, finished, storage_cause, storage_failure
from digitpipe_search.trials import (
    CAUGHT,
    DIVERGED_ATTR,
    FAIL_ATTR,
    RUN_ATTR,
    STATE_TAG,
    TrialStopped,
    end_child_run,
)


def run_trials(study, objective, client, search, url: str) -> None:
    """Trials until the study has search.n_trials finished ones (complete or pruned) and none runs."""
    import optuna

    total = int(search.n_trials)
    ended = trial_ended(client, total)
    with warnings.catch_warnings(), storage_failures_told_once():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        while True:
            try:
                optuna.storages.fail_stale_trials(study)  # a dead worker's trial: FAIL, and queued again
                close_stale_runs(study, client, float(search.grace_s))
                tally = counts(study)
                if (failed := len(failures(study))) >= max(total, 3):
                    raise TrackingError(
                        f"{failed} trials of study {study.study_name!r} failed; see their runs' "
                        "end_reason tags in MLflow, fix the cause, and run the search again"
                    )
                if tally["WAITING"] or sum(tally[s] for s in FINISHED) + tally["RUNNING"] < total:
                    study.optimize(
                        objective, n_trials=1, catch=CAUGHT, callbacks=[ended], gc_after_trial=False
                    )
                    continue
            except TrialStopped as stop:
                raise stop.interrupted from None
            except Exception as err:
                if (cause := storage_cause(err)) is None:
                    raise
                raise storage_failure(url, cause) from err
            if not tally["RUNNING"]:
                return
            time.sleep(float(search.heartbeat_s))  # the last trials run elsewhere; one may need a retry


@contextlib.contextmanager
def storage_failures_told_once() -> Iterator[None]:
    """A storage that stops answering is told in one line, not also in Optuna's heartbeat's traceback."""
    told = threading.excepthook

    def quiet(args) -> None:
        if storage_cause(args.exc_value) is None:
            told(args)

    threading.excepthook = quiet
    try:
        yield
    finally:
        threading.excepthook = told


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


def trial_ended(client, total: int) -> Callable[[Any, Any], None]:
    """Optuna's callback after each trial: its state onto its MLflow run, and one line."""
    who = f"worker {os.environ[WORKER_ENV]}: " if os.environ.get(WORKER_ENV) else ""

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
        params = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
        )
        done = finished(study)
        print(f"{who}trial {trial.number} {state} {detail} [{params}] ({done}/{total} done)", flush=True)

    return ended


WORKER_ENV = "DIGITPIPE_SEARCH_WORKER"  # set in the processes search.workers=N starts: their lines say who


def run_copies(workers: int) -> list[int]:
    """`search.workers=N`: N processes of this same command, each a worker on the study as a machine
    of many would be (one GPU each where there are GPUs, the cores divided where there are none);
    their exit codes. Each runs in a process group of its own, so a Ctrl-C reaches it once: from here."""
    import torch

    argv = [a for a in sys.argv[1:] if not a.lstrip("+").startswith(("search.workers=", "search.finalize="))]
    gpus = torch.cuda.device_count()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    place = "CUDA_VISIBLE_DEVICES" if gpus else "OMP_NUM_THREADS"  # the latter: torch's default threads
    processes = []
    for index in range(1, workers + 1):
        command = [sys.executable, sys.argv[0], *argv, "search.workers=1", "search.finalize=false",
                   "hydra.output_subdir=null", f"hydra.job.name=search_worker{index}"]  # fmt: skip
        value = (index - 1) % gpus if gpus else max(1, cores // workers)
        environ = {**os.environ, place: str(value), WORKER_ENV: str(index)}
        processes.append(subprocess.Popen(command, env=environ, process_group=0))

    def forward(signum: int) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    undo = interrupts.forward_to(forward)
    try:
        with interrupts.handled(grace_s=60):  # waiting is no hang: each worker's own grace ends it first
            for process in processes:
                process.wait()
    except interrupts.Interrupted:
        for process in processes:  # each marks its trial FAIL and exits within seconds (10 s at most)
            process.wait()
        raise
    finally:
        undo()
    return [p.returncode for p in processes]
