"""Every environment variable this project reads or sets, and what a training puts back when it ends.

Read, set by the user (or the tools that start a stage):
    MNIST_MIRROR          a directory or URL holding the MNIST .gz files, tried before the mirrors
    MLFLOW_TRACKING_URI   MLflow's own: the store, when mlflow.tracking_uri is not set
    DVC_EXP_NAME          DVC's, inside `dvc exp run`: runs are named and tagged with the experiment
    DIGITPIPE_CPU_BF16    1 or 0: what trainer.precision=auto takes the CPU to have, instead of torch's
                          CPUID probe (`pytest --cpu-bf16=0|1` runs the suite as on either kind of CPU)

Set by a process for the processes it starts (a DDP rank cannot be handed anything else: Lightning
starts it by running the same command line again):
    DIGITPIPE_RESUME_CHECKPOINT     rank 0's decision: the checkpoint the ranks resume ("" for none)
    DIGITPIPE_MLFLOW_PARENT_RUN_ID  a `-m` sweep's parent run, the parent of its jobs' runs
    MLFLOW_HTTP_REQUEST_TIMEOUT, _MAX_RETRIES, _BACKOFF_FACTOR
                                    MLflow's own, from mlflow.http: how long a dead server is waited for
    DIGITPIPE_SEARCH_WORKER         the index of a process `search.workers=N` started (its lines say so)

Set by a command for itself, where the user has not (cli.preflight):
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR   "false": no upload bar among a training's lines

`restored()` puts back, after a training, what it changes process-wide: these variables and those
Lightning's launcher and seed_everything set (MASTER_ADDR, PL_GLOBAL_SEED, ...), the command line
(narrowed for a sweep's DDP ranks) and torch's deterministic-mode flags (set by
Trainer(deterministic=True) and make_trainer). A search calls train() many times in one process.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

MNIST_MIRROR = "MNIST_MIRROR"
MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
DVC_EXP_NAME = "DVC_EXP_NAME"
CPU_BF16 = "DIGITPIPE_CPU_BF16"
RESUME_CHECKPOINT = "DIGITPIPE_RESUME_CHECKPOINT"
SWEEP_PARENT_RUN = "DIGITPIPE_MLFLOW_PARENT_RUN_ID"
MLFLOW_HTTP = {  # mlflow.http's keys, and the variable MLflow's client reads each from
    "timeout_s": "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "max_retries": "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "backoff_factor": "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
}


def torch_flags() -> dict[str, object]:
    """torch's process-wide switches that a Trainer and make_trainer change."""
    import torch  # here: the variables above are read by modules that need no torch

    return {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "fill": torch.utils.deterministic.fill_uninitialized_memory,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


def set_torch_flags(flags: dict[str, object]) -> None:
    import torch

    torch.use_deterministic_algorithms(bool(flags["deterministic"]), warn_only=bool(flags["warn_only"]))
    torch.utils.deterministic.fill_uninitialized_memory = bool(flags["fill"])
    torch.backends.cudnn.deterministic = bool(flags["cudnn_deterministic"])
    torch.backends.cudnn.benchmark = bool(flags["cudnn_benchmark"])


@contextlib.contextmanager
def restored() -> Iterator[None]:
    """Within the block the process may change; after it, the environment, argv and torch flags are
    as they were."""
    environ, argv, flags = dict(os.environ), list(sys.argv), torch_flags()
    try:
        yield
    finally:
        for key in [k for k in os.environ if k not in environ]:
            del os.environ[key]
        os.environ.update(environ)
        sys.argv[:] = argv
        set_torch_flags(flags)
