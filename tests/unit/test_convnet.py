import pytest
import torch
from torch import nn

from digitpipe.errors import ConfigError
from digitpipe.models.convnet import ACTIVATIONS, build_convnet
from digitpipe.models.summary import model_summary, summarize

SEED_LAYER_PARAMS = [320, 0, 18_496, 0, 36_928, 0, 36_928, 650]


def test_layers_have_the_seed_parameter_counts():
    rows = summarize(build_convnet("relu", 0.1, 10, "glorot", 28), (1, 28, 28))
    assert [r.params for r in rows] == SEED_LAYER_PARAMS
    assert [r.output_shape for r in rows] == [
        (32, 26, 26), (32, 13, 13), (64, 11, 11), (64, 5, 5), (64, 3, 3), (576,), (64,), (10,)
    ]  # fmt: skip


def test_the_network_has_93322_parameters_and_returns_logits():
    net = build_convnet("relu", 0.1, 10, "glorot", 28)
    assert sum(p.numel() for p in net.parameters()) == 93_322
    assert net(torch.rand(4, 1, 28, 28)).shape == (4, 10)


def test_summary_prints_layers_activations_and_totals():
    text = model_summary(build_convnet("sigmoid", 0.1, 10, "glorot", 28), (1, 28, 28))
    assert "conv1 (Conv2d)     Sigmoid" in text
    assert "Total params: 93,322" in text and "Non-trainable params: 0" in text


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
