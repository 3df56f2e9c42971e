"""The diagnostics' measures on tiny generated inputs: dead units, saturation, the records' shape."""

from __future__ import annotations

import csv
import io

import pytest
import torch
from torch import nn

from digitpipe.diagnostics.callback import COLUMNS, Diagnostics, metric_key
from digitpipe.diagnostics.probe import activation_layers, unit_statistics, weight_layers
from digitpipe.diagnostics.report import DIAGNOSTICS_CSV, DIAGNOSTICS_PNG, diagnostics_files, series
from digitpipe.models.convnet import build_convnet

LAYERS = ["conv1", "conv2", "conv3", "dense1"]


def convnet(activation: str, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return build_convnet(activation, 0.1, 10, "glorot", 28)


def images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Zero-mean noise: every unit of a fresh network sees inputs of both signs."""
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_each_activation_is_named_after_the_layer_it_follows():
    net = convnet("relu")
    assert list(activation_layers(net)) == LAYERS
    assert weight_layers(net) == [*LAYERS, "dense2"]  # the logits layer has no activation


def dense(activation: nn.Module, bias: float = 0.0) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 16), activation)
    with torch.no_grad():
        net[0].bias.fill_(bias)
    return net


def test_a_layer_forced_dead_is_all_dead_and_a_fresh_leaky_layer_has_no_dead_unit():
    x = torch.randn(200, 20, generator=torch.Generator().manual_seed(1))  # zero-mean: both signs
    for activation in (nn.ReLU(), nn.LeakyReLU(0.1), nn.ELU(), nn.Tanh()):
        forced = dense(activation, bias=-1e6)
        assert unit_statistics(forced, forced, x)["dead"] == {"0": 1.0}
        fresh = dense(activation)
        assert unit_statistics(fresh, fresh, x)["dead"] == {"0": 0.0}


def test_in_the_convnet_units_downstream_of_a_dead_layer_die_with_it():
    net = convnet("relu")
    with torch.no_grad():
        net.conv2.bias.fill_(-1e6)
    dead = unit_statistics(net, net, images())["dead"]
    assert dead == {"conv1": 0.0, "conv2": 1.0, "conv3": 1.0, "dense1": 1.0}  # zero biases: zeros stay zeros


def test_huge_pre_activations_are_saturated_and_a_fresh_sigmoid_network_is_barely():
    net = convnet("sigmoid")
    fresh = unit_statistics(net, net, images())["saturated"]
    assert set(fresh) == set(LAYERS) and max(fresh.values()) < 0.05
    with torch.no_grad():
        net.conv1.bias.fill_(1e3)
    assert unit_statistics(net, net, images())["saturated"]["conv1"] == pytest.approx(1.0)


def test_the_probe_gives_the_same_answer_in_any_chunk_size_and_leaves_the_mode_as_it_was():
    net = convnet("tanh")
    net.train()
    whole = unit_statistics(net, net, images(50), chunk=500)
    assert net.training
    net.eval()
    assert unit_statistics(net, net, images(50), chunk=7) == whole
    assert not net.training


def test_records_become_a_tidy_csv_and_a_figure():
    callback = Diagnostics("sigmoid", every_n_steps=2, detail_steps=1, probe_size=8, saturation_threshold=5.0)
    for step, value in ((1, 0.5), (2, 0.25)):
        for layer in ["conv1", "dense2"]:
            callback._record(step, 1, "grad_norm", layer, value)
    for epoch in (0, 1):
        callback._record(epoch * 10, epoch, "dead", "conv1", 0.1 * epoch)
        callback._record(epoch * 10, epoch, "saturated", "conv1", 0.2)
    files = diagnostics_files(callback.records, "a title")
    rows = list(csv.DictReader(io.StringIO(files[DIAGNOSTICS_CSV].decode())))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 8
    assert files[DIAGNOSTICS_PNG].startswith(b"\x89PNG")
    assert series(callback.records, "grad_norm") == {
        "conv1": ([1, 2], [0.5, 0.25]),
        "dense2": ([1, 2], [0.5, 0.25]),
    }
    assert series(callback.records, "dead") == {"conv1": ([0, 1], [0.0, 0.1])}  # x: the epoch
    assert (
        metric_key("grad_norm", "conv1") == "diag/grad_norm/conv1"
        and metric_key("step_ms", "") == "diag/step_ms"
    )


def diagnostics(activation: str) -> Diagnostics:
    """The callback with the settings diagnostics=on gives it."""
    from hydra.utils import instantiate

    from ..conftest import compose_config

    return instantiate(
        compose_config(["diagnostics=on", f"model.activation={activation}"]).callbacks.diagnostics
    )


def test_the_callback_state_goes_into_the_checkpoint_and_back():
    callback = diagnostics("relu")
    callback._record(0, 0, "dead", "conv1", 0.0)
    callback.unsent.append(("diag/dead/conv1", 0.0, 0))
    restored = diagnostics("relu")
    restored.load_state_dict(torch.load(io.BytesIO(_saved(callback.state_dict())), weights_only=True))
    assert restored.records == callback.records and restored.unsent == callback.unsent


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_without_a_threshold_only_dead_units_are_measured():
    net = convnet("relu")
    stats = unit_statistics(net, net, images(), threshold=None)
    assert set(stats) == {"dead"} and stats["dead"] == unit_statistics(net, net, images())["dead"]
