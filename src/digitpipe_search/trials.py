"""One trial: the point Optuna samples, composed into the main config as Hydra overrides and trained
by the same train(cfg) as `python src/train.py`, in this process, in an MLflow child run of the
study's run. It is pruned on val/acc per epoch, scored by its best val/acc, sees no test data and
registers no model; its files go when it ends (MLflow keeps its metrics)."""

from __future__ import annotations

import copy
import functools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from digitpipe.errors import ConfigError, DivergedError
from digitpipe.interrupts import Interrupted
from digitpipe.metric_names import VAL_ACC
from digitpipe_search.space import overrides, suggest

DIVERGED_ATTR = "diverged"  # a pruned trial whose training diverged (its run: FAILED, with why)
FAIL_ATTR = "fail_reason"  # why a trial failed, one line (a killed worker's trial has none)
RUN_ATTR = "mlflow_run_id"  # the trial's user attribute naming its MLflow run
STATE_TAG = "search.state"  # COMPLETE | PRUNED | FAIL, as Optuna ends the trial
RETRY_ATTR = "retry_of"  # a stopped trial's point, queued again: the trial it retries
THREADS_ATTR = "torch_threads"  # torch's intra-op threads the trial trained on: its winner trains on as many
SCORE = "best/val_acc"  # the trial's value: the best epoch's val/acc, the checkpoint a winner keeps


class TrialStopped(KeyboardInterrupt):
    """A signal during a trial, as Optuna understands one: it marks the trial FAIL, then re-raises."""

    def __init__(self, interrupted: Interrupted) -> None:
        super().__init__(str(interrupted))
        self.interrupted = interrupted


class SurplusTrial(Exception):
    """Started by a worker when the last needed trial had just been started by another one."""


# per-trial overrides that keep a trial a measurement: no test data, no model logged or registered,
# a fresh run every time (a retried trial is a new trial)
TRIAL_SETTINGS = (
    "test_after_fit=false",
    "resume=false",
    "mlflow.log_model=false",
    "mlflow.log_checkpoint=false",
    "mlflow.registered_model_name=null",
)
INPUTS = ("raw_dir", "dataset", "stats")  # the paths a training reads; it writes every other one


def own_files(cfg: DictConfig, directory: Path) -> None:
    """Every file the config writes (paths.*), by its own name, in `directory`: a trial's or a
    winner's files never replace the main pipeline's."""
    for key, path in cfg.paths.items():
        if key not in INPUTS:
            cfg.paths[key] = str(directory / Path(path).name)


@dataclass
class Objective:
    """Optuna's objective for one study; `compose(overrides)` gives the main config with them."""

    study_name: str
    space: dict  # key: Optuna's distribution
    fixed: list[str]  # the command line's overrides, the same for every trial
    compose: Callable[[list[str]], DictConfig]
    work_dir: Path
    parent_run_id: str | None
    total: int
    groups: frozenset[str] = frozenset()  # config groups: a null choice is `~group`
    storage: str = ""  # the study's storage URL, named when it stops answering mid-trial

    def __call__(self, trial) -> float:
        import optuna
        import torch

        from digitpipe.training.train import train

        if is_surplus(trial, self.total):
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number}: {self.total} trials were already started")
        try:
            cfg = self.trial_config(trial, suggest(trial, self.space))
            trial.set_user_attr(THREADS_ATTR, torch.get_num_threads())  # sums differ with the thread count
            result = train(cfg, callbacks=[pruning(trial, self.storage), run_of(trial)])
        except Interrupted as stop:  # its point queued again, as Optuna's retry does for a dead worker's
            trial.set_user_attr(FAIL_ATTR, f"stopped: {stop}")
            trial.study.enqueue_trial(trial.params, user_attrs={RETRY_ATTR: trial.number})
            stop.detail = (
                f"trial {trial.number} marked FAIL and queued again; the same command continues the study"
            )
            raise TrialStopped(stop) from stop
        except DivergedError as err:  # pruned: TPE learns from it, and nothing from a failed trial
            trial.set_user_attr(DIVERGED_ATTR, str(err).splitlines()[0][:500])
            raise optuna.TrialPruned(f"diverged: {err}") from err
        except CAUGHT as err:  # Optuna 5 keeps no reason for a failed trial: it is kept here
            trial.set_user_attr(FAIL_ATTR, f"{type(err).__name__}: {err}".splitlines()[0][:500])
            raise
        finally:
            shutil.rmtree(self.work_dir / f"trial-{trial.number}", ignore_errors=True)
        trial.set_user_attr("fit_seconds", round(float(result.metrics["fit_seconds"]), 3))
        return float(result.metrics[SCORE])

    def __post_init__(self) -> None:  # Hydra composes in about 0.25 s: once per choice of groups
        self.composed = functools.lru_cache(64)(
            lambda chosen: self.compose([*self.fixed, *chosen, *TRIAL_SETTINGS])
        )

    def trial_config(self, trial, point: dict) -> DictConfig:
        """The main config with the command line's and this point's overrides (its group choices
        composed by Hydra, its values set as Hydra sets `key=value`), then the trial's own files, name
        and MLflow parent set on it (values no override syntax needs to quote)."""
        chosen = {key: value for key, value in point.items() if key in self.groups}
        cfg = copy.deepcopy(self.composed(tuple(overrides(chosen, self.groups))))
        for key, value in point.items():
            if key not in self.groups:
                OmegaConf.update(cfg, key, value)
        own_files(cfg, self.work_dir / f"trial-{trial.number}")
        cfg.mlflow.run_name = f"trial {trial.number}: {' '.join(overrides(point, self.groups))}"[:240]
        tags = {"search.study": self.study_name, "search.trial": str(trial.number)}
        cfg.mlflow.tags = {**cfg.mlflow.tags, **tags}
        cfg.mlflow.parent_run_id = self.parent_run_id
        return cfg


def pruning(trial, storage: str):
    """Optuna's pruning callback on val/acc, whose storage failing mid-trial (a database stopped, a
    full disk) ends the training with the database's own words, not Optuna's guess about them."""
    from optuna_integration import PyTorchLightningPruningCallback

    from digitpipe_search.study import storage_errors, storage_failure

    class Pruning(PyTorchLightningPruningCallback):
        def on_validation_end(self, trainer, pl_module) -> None:
            try:
                super().on_validation_end(trainer, pl_module)
            except storage_errors() as err:
                raise storage_failure(storage, err) from err

    return Pruning(trial, monitor=VAL_ACC)


def run_of(trial):
    """A Lightning callback that puts the training's MLflow run id on the trial as it starts, so that
    a trial pruned mid-fit, or whose worker is killed, still names its run."""
    from lightning.pytorch.callbacks import Callback

    class RunOf(Callback):
        def setup(self, trainer, pl_module, stage: str) -> None:
            if isinstance(version := getattr(trainer.logger, "version", None), str):
                trial.set_user_attr(RUN_ATTR, version)

    return RunOf()


def is_surplus(trial, total: int) -> bool:
    """Whether `total` trials numbered below this one already finished or run (a retried trial
    replaces a failed one, so it is never surplus)."""
    from optuna.trial import TrialState

    trials = trial.study.get_trials(deepcopy=False)
    if any(t.number == trial.number and ("failed_trial" in t.system_attrs or RETRY_ATTR in t.user_attrs)
           for t in trials):  # fmt: skip
        return False
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(1 for t in trials if t.number < trial.number and t.state in counted) >= total


CAUGHT = (ConfigError, SurplusTrial)  # a trial fails; the search goes on


def end_child_run(client, run_id: str, state: str, reason: str | None = None) -> None:
    """The trial's state on its MLflow run: a pruned trial's run ends KILLED (stopped on purpose),
    a trial whose worker died ends FAILED with why; the others end as train() ended them."""
    from digitpipe.tracking.run import END_REASON

    client.set_tag(run_id, STATE_TAG, state)
    status = {"PRUNED": "KILLED", "FAIL": "FAILED"}.get(state)
    if status and reason:
        client.set_tag(run_id, END_REASON, reason)
        client.set_terminated(run_id, status)
