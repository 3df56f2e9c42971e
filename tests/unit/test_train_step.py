"""`train_step`: which runner the optimizer steps get, grouped batches, and the CUDA-graph step.

The CUDA tests run where a GPU is (the lent GPU sessions run them: benchmarks/gpu_session.sh);
everything else runs here. The records a grouped training writes are compared with an ungrouped
one's in tests/integration/test_train_api.py.
"""

from __future__ import annotations

import copy
import logging
import re

import pytest
import torch

from digitpipe.config.settings import validate
from digitpipe.config.steps import GRAPHED_STEPS_PER_BATCH, StepPlan
from digitpipe.data.batches import EpochOrder, IndexBatches, Split
from digitpipe.errors import ConfigError
from digitpipe.models.convnet import build_convnet
from digitpipe.steps.batches import Grouped
from digitpipe.steps.runners import EagerStep, GraphedStep

from ..conftest import compose_config


def step_plan(cfg):
    return validate(cfg).steps


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_on_the_cpu_steps_run_as_lightning_runs_them():
    assert step_plan(compose_config()) == StepPlan(cuda_graph=False, steps_per_batch=1)
    assert not StepPlan(cuda_graph=False, steps_per_batch=1).manual


@pytest.fixture
def one_cuda_gpu(monkeypatch):
    """The plan as a machine with one CUDA GPU makes it (it only asks torch.cuda)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize(
    "overrides", [[], ["trainer.precision=32"], ["trainer.devices=[0]"], ["trainer.devices=auto"]]
)
def test_on_one_gpu_the_seed_recipe_is_graphed_in_groups_of_steps(one_cuda_gpu, overrides):
    plan = step_plan(compose_config(["trainer=gpu", *overrides]))
    assert plan == StepPlan(cuda_graph=True, steps_per_batch=GRAPHED_STEPS_PER_BATCH) and plan.manual


def test_gpu_named_without_cuda_gets_no_graph(monkeypatch):
    """Lightning's accelerator=gpu is also Apple's MPS; a graph needs CUDA."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert step_plan(compose_config(["trainer=gpu"])) == StepPlan(False, 1)


@pytest.mark.parametrize(
    "limit", ["+trainer.max_steps=120", "+trainer.limit_train_batches=20", "+trainer.val_check_interval=0.25"]
)
def test_trainer_limits_counted_in_lightning_batches_keep_one_step_per_batch(one_cuda_gpu, limit, caplog):
    """max_steps=120 must stop after 120 optimizer steps, not 120 groups of 50."""
    with caplog.at_level(logging.INFO, logger="digitpipe.config.steps"):
        plan = step_plan(compose_config(["trainer=gpu", limit]))
    assert plan == StepPlan(cuda_graph=True, steps_per_batch=1)
    key = limit.removeprefix("+").split("=")[0]
    assert f"one training step per Lightning batch: {key} counts Lightning batches" in caplog.text
    with pytest.raises(ConfigError, match=f"train_step.steps_per_batch=4 cannot be used here: {key} counts"):
        step_plan(compose_config(["trainer=gpu", limit, "train_step.steps_per_batch=4"]))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["scheduler=onecycle"], "a learning-rate scheduler is configured"),
        (["trainer.precision=bf16-mixed"], "precision bf16-mixed"),
        (["optimizer=sgd"], "SGD has no capturable update"),
        (["diagnostics=on"], "diagnostics=on"),
        (["trainer=ddp", "trainer.devices=2"], "several processes (DDP)"),
        (["+trainer.gradient_clip_val=1.0"], "trainer.gradient_clip_val is set"),
        (["trainer.precision=16-mixed"], "its gradient scaler steps with Lightning's"),
        (["+trainer.detect_anomaly=true"], "detect_anomaly checks every gradient on the host"),
    ],
)
def test_auto_falls_back_to_eager_steps_and_says_why_where_a_graph_cannot_serve(
    one_cuda_gpu, overrides, reason, caplog
):
    with caplog.at_level(logging.INFO, logger="digitpipe.config.steps"):
        assert step_plan(compose_config(["trainer=gpu", *overrides])) == StepPlan(False, 1)
    assert reason in caplog.text and "not as a CUDA graph" in caplog.text
    with pytest.raises(
        ConfigError, match=f"train_step.cuda_graph=true cannot be used here: .*{re.escape(reason)}"
    ):
        step_plan(compose_config(["trainer=gpu", "train_step.cuda_graph=true", *overrides]))


def test_the_cpu_has_no_graph_to_give():
    with pytest.raises(ConfigError, match="does not run on a CUDA GPU"):
        step_plan(compose_config(["train_step.cuda_graph=true"]))


@pytest.mark.parametrize(
    ("override", "fix"),
    [
        ("train_step.steps_per_batch=0", "a whole number of steps >= 1"),
        ("train_step.steps_per_batch=2.5", "a whole number of steps >= 1"),
        ("train_step.cuda_graph=sometimes", "auto, true or false"),
        ("train_step.steps_per_batch=4 scheduler=cosine", "Use train_step.steps_per_batch=1"),
        ("train_step.steps_per_batch=4 trainer.precision=16-mixed", "its gradient scaler steps with"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_fix(override, fix):
    with pytest.raises(ConfigError, match=fix) as caught:
        step_plan(compose_config(override.split()))
    assert "\n" not in str(caught.value)


def test_grouped_batches_are_the_ungrouped_batches_in_the_same_order():
    images, labels = torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8), torch.arange(100)
    batches = IndexBatches(Split(images, labels), 16, EpochOrder(100, shuffle=True, seed=3), lambda: 0)
    single, grouped = list(batches), list(Grouped(batches, 3))
    assert len(Grouped(batches, 3)) == len(grouped) == 3
    assert [len(group) for group in grouped] == [3, 3, 1]  # 7 batches, the last of 4 images
    flat = [batch for group in grouped for batch in group]
    assert len(flat) == len(single) == 7
    for (a_images, a_labels), (b_images, b_labels) in zip(flat, single, strict=True):
        assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)


def test_a_graph_needs_a_capturable_optimizer():
    net = build_convnet("relu", 0.1, 10, "glorot", 28)
    with pytest.raises(ValueError, match="capturable=True"):
        GraphedStep(net, torch.optim.RMSprop(net.parameters()))


def runners(capturable: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = build_convnet("relu", 0.1, 10, "glorot", 28).cuda()
    return net, torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7, capturable=capturable)


def batches(count: int, short_at: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` fresh batches of 64 on the GPU, the one at `short_at` of 24 (an epoch's last)."""
    generator = torch.Generator().manual_seed(1)
    sizes = [24 if i == short_at else 64 for i in range(count)]
    return [
        (
            torch.rand(n, 1, 28, 28, generator=generator).cuda(),
            torch.randint(0, 10, (n,), generator=generator).cuda(),
        )
        for n in sizes
    ]


@pytest.fixture
def no_tf32():
    """Full fp32 and deterministic convolutions (cuDNN's weight gradients otherwise add in any order),
    so that two runs of one step agree to float rounding."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, cudnn.deterministic, matmul.allow_tf32
    cudnn.allow_tf32, cudnn.deterministic, matmul.allow_tf32 = False, True, False
    yield
    cudnn.allow_tf32, cudnn.deterministic, matmul.allow_tf32 = saved


@cuda
def test_each_graphed_step_is_the_eager_step(no_tf32):
    """Before every step the eager runner gets the graphed one's weights and optimizer state, so each
    step is compared alone (RMSprop amplifies rounding differences over steps): same loss, logits
    and updated weights, for the warm-up steps, the replays and the short batch."""
    graph_net, graph_optimizer = runners(capturable=True)
    eager_net, eager_optimizer = runners(capturable=True)
    eager, graphed = EagerStep(eager_net, eager_optimizer), GraphedStep(graph_net, graph_optimizer)
    for images, labels in batches(14, short_at=9):
        eager_net.load_state_dict(graph_net.state_dict())
        # a copy: load_state_dict keeps tensors already on the right device, shared with their source
        eager_optimizer.load_state_dict(copy.deepcopy(graph_optimizer.state_dict()))
        expected, got = eager(images, labels), graphed(images, labels)
        torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-6)  # the loss
        torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-5)  # the logits
        for (name, a), b in zip(eager_net.named_parameters(), graph_net.parameters(), strict=True):
            # an update moves a weight by ~1e-3 (lr 1e-3 over a root-mean-square): 1e-5 is rounding
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    assert graphed.replays == 14 - 3 - 1  # 3 warm-up steps and the short batch ran eagerly


@cuda
def test_each_replay_reads_the_batch_it_is_given():
    """Replays of one batch, then of another: the outputs follow the inputs (the copy into the
    graph's static inputs is not lost), and the update happens once per call."""
    net, optimizer = runners(capturable=True)
    step = GraphedStep(net, optimizer, warmup=1)
    (a_images, a_labels), (b_images, b_labels) = batches(2, short_at=-1)
    step(a_images, a_labels)  # warm-up
    before = [p.detach().clone() for p in net.parameters()]
    loss_a, _ = step(a_images, a_labels)
    moved = [p.detach().clone() for p in net.parameters()]
    assert any(not torch.equal(x, y) for x, y in zip(before, moved, strict=True))
    with torch.no_grad():
        expected_b = torch.nn.functional.cross_entropy(net(b_images), b_labels)
    loss_b, _ = step(b_images, b_labels)
    torch.testing.assert_close(loss_b, expected_b, rtol=1e-4, atol=1e-5)
    assert not torch.equal(loss_a, loss_b)
