"""How DDP splits the batch and scales the rate, and the command line each rank of a sweep job gets."""

from __future__ import annotations

import pytest

from digitpipe.config.settings import validate
from digitpipe.config.values import per_process_batch_size as per_device_batch_size
from digitpipe.distributed.launch import pin_argv_to_current_job
from digitpipe.errors import ConfigError
from digitpipe.training.build import build_model

from ..conftest import compose_config


@pytest.mark.parametrize(("batch", "world", "scope", "per_device"),
                         [(64, 1, "global", 64), (64, 2, "global", 32), (64, 8, "global", 8),
                          (64, 4, "per_device", 64), (63, 2, "per_device", 63)])  # fmt: skip
def test_a_global_batch_is_split_evenly_and_a_per_device_batch_is_kept(batch, world, scope, per_device):
    assert per_device_batch_size(batch, world, scope) == per_device


def test_a_global_batch_that_does_not_split_evenly_is_refused_with_the_fix():
    with pytest.raises(ConfigError) as caught:
        per_device_batch_size(64, 3, "global")
    assert str(caught.value) == (
        "data.batch_size=64 is a global batch and does not split evenly over 3 processes; use a "
        "multiple of 3, or distributed.batch_scope=per_device"
    )


def test_an_unknown_batch_scope_lists_the_valid_ones():
    with pytest.raises(
        ConfigError, match=r"distributed.batch_scope='node' must be one of: global, per_device"
    ):
        validate(compose_config(["distributed.batch_scope=node"]))


@pytest.mark.parametrize(("scale", "lr"), [(True, 4e-3), (False, 1e-3)])
def test_the_learning_rate_scales_with_the_processes_only_when_asked(scale, lr):
    cfg = compose_config([f"distributed.scale_lr={scale}"])
    model = build_model(cfg, validate(cfg), world_size=4)
    assert model.optimizer_factory.keywords["lr"] == pytest.approx(lr)


def test_a_sweep_jobs_ranks_get_its_config_flags_and_its_own_overrides_not_the_sweep():
    argv = ["src/train.py", "-m", "-cd", "conf2", "--config-name=params", "model.activation=relu,tanh",
            "trainer=ddp_cpu", "-cp", "x"]  # fmt: skip
    job = ["model.activation=tanh", "trainer=ddp_cpu"]
    flags = ["-cd", "conf2", "--config-name=params", "-cp", "x"]
    assert pin_argv_to_current_job(argv, job) == ["src/train.py", *flags, *job]


def test_a_config_flag_at_the_end_without_its_value_does_not_crash():
    assert pin_argv_to_current_job(["train.py", "-cn"], []) == ["train.py", "-cn", ""]
