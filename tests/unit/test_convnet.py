import re

import pytest
import torch
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch import nn

from digitpipe.errors import ConfigError
from digitpipe.models.classifier import DigitClassifier
from digitpipe.models.convnet import ACTIVATIONS, build_convnet

SEED_LAYER_PARAMS = [320, 0, 18_496, 0, 36_928, 0, 36_928, 650]


def test_layers_have_the_seed_parameter_counts_and_output_sizes():
    summary = ModelSummary(DigitClassifier("relu", 0.1, 10, 28, "glorot"), max_depth=2)
    layers = zip(summary.layer_names, summary.param_nums, summary.out_sizes, strict=True)
    rows = [(params, out[1:]) for name, params, out in layers if re.fullmatch(r"net\.(?!act)\w+", name)]
    assert [params for params, _ in rows] == SEED_LAYER_PARAMS
    assert [out for _, out in rows] == [
        [32, 26, 26], [32, 13, 13], [64, 11, 11], [64, 5, 5], [64, 3, 3], [576], [64], [10]
    ]  # fmt: skip


def test_the_network_has_93322_parameters_and_returns_logits():
    net = build_convnet("relu", 0.1, 10, "glorot", 28)
    assert sum(p.numel() for p in net.parameters()) == 93_322
    assert net(torch.rand(4, 1, 28, 28)).shape == (4, 10)


def test_the_summary_prints_each_layer_with_its_in_and_out_sizes_and_the_totals():
    text = DigitClassifier("sigmoid", 0.1, 10, 28, "glorot").summary()
    assert re.search(r"net\.act1 +\| Sigmoid +\| 0 .*\| \[1, 32, 26, 26\] +\| \[1, 32, 26, 26\]", text), text
    assert "93.3 K    Total params" in text and "0         Non-trainable params" in text


EXPECTED_TYPES = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
                  "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}  # fmt: skip


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_the_configured_activation_follows_every_hidden_layer_and_nothing_else(name):
    net = build_convnet(name, 0.1, 10, "glorot", 28)
    found = [(layer_name, type(layer)) for layer_name, layer in net.named_children()
             if not isinstance(layer, (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.Flatten))]  # fmt: skip
    assert found == [(f"act{i}", EXPECTED_TYPES[name]) for i in (1, 2, 3, 4)]


def test_the_dense_layer_takes_what_the_convolutions_leave_of_the_configured_image_size():
    assert build_convnet("relu", 0.1, 10, "glorot", 28).dense1.in_features == 3 * 3 * 64
    net = build_convnet("relu", 0.1, 10, "glorot", 32)  # 30 -> 15 -> 13 -> 6 -> 4
    assert net.dense1.in_features == 4 * 4 * 64 and net(torch.rand(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(
        ConfigError, match=r"data.image_size=16 is too small for this network: it needs at least 18"
    ):
        build_convnet("relu", 0.1, 10, "glorot", 16)


def test_leaky_relu_uses_the_configured_slope():
    net = build_convnet("leaky_relu", 0.1, 10, "glorot", 28)
    act = net.act1
    assert isinstance(act, nn.LeakyReLU)
    assert act(torch.tensor([-10.0, 3.0])).tolist() == pytest.approx([-1.0, 3.0])


def test_an_unknown_activation_lists_the_valid_names():
    with pytest.raises(
        ConfigError, match="'swish' is not a known activation; choose one of: relu, leaky_relu"
    ):
        build_convnet("swish", 0.1, 10, "glorot", 28)
