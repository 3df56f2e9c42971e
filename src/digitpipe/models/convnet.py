"""The seed's convnet (the Keras MNIST example), as a plain nn.Module."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn

from digitpipe.errors import ConfigError

# name -> factory(negative_slope) ; leaky_relu is the seed's max(0.1 y, y) by default
ACTIVATIONS: dict[str, Callable[[float], nn.Module]] = {
    "relu": lambda _: nn.ReLU(),
    "leaky_relu": lambda slope: nn.LeakyReLU(slope),
    "sigmoid": lambda _: nn.Sigmoid(),
    "tanh": lambda _: nn.Tanh(),
    "elu": lambda _: nn.ELU(),
    "gelu": lambda _: nn.GELU(),
    "silu": lambda _: nn.SiLU(),
}


ACTIVATION_TYPES = tuple({type(factory(0.1)) for factory in ACTIVATIONS.values()})


def check_activation(name: str) -> None:
    if name not in ACTIVATIONS:
        valid = ", ".join(ACTIVATIONS)
        raise ConfigError(f"model.activation={name!r} is not a known activation; choose one of: {valid}")


def make_activation(name: str, negative_slope: float) -> nn.Module:
    check_activation(name)
    return ACTIVATIONS[name](negative_slope)


INITS = ("glorot", "torch")


def check_init(scheme: str) -> None:
    if scheme not in INITS:
        raise ConfigError(f"model.init={scheme!r} is not a known scheme; choose one of: {', '.join(INITS)}")


def init_weights(net: nn.Module, scheme: str) -> nn.Module:
    """glorot: Keras' defaults (Glorot-uniform kernels, zero biases), as the seed; torch: PyTorch's."""
    check_init(scheme)
    if scheme == "glorot":
        for layer in net.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return net


def feature_side(image_size: int) -> int:
    """The side of conv3's output for image_size x image_size inputs: each 3x3 convolution takes 2
    off, each 2x2 pooling halves (28 -> 26 -> 13 -> 11 -> 5 -> 3)."""
    side = ((image_size - 2) // 2 - 2) // 2 - 2  # conv1, pool1, conv2, pool2, conv3
    if side < 1:
        raise ConfigError(f"data.image_size={image_size} is too small for this network: it needs at least 18")
    return side


def build_convnet(
    activation: str, negative_slope: float, num_classes: int, init: str, image_size: int
) -> nn.Sequential:
    """Conv 32 -> pool -> conv 64 -> pool -> conv 64 -> flatten -> dense 64 -> dense classes.

    The last layer returns logits: the seed's softmax is folded into the cross-entropy loss.
    """
    side = feature_side(image_size)

    def act() -> nn.Module:
        return make_activation(activation, negative_slope)

    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 32, kernel_size=3), act1=act(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(32, 64, kernel_size=3), act2=act(),
            pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(64, 64, kernel_size=3), act3=act(),
            flatten=nn.Flatten(),
            dense1=nn.Linear(side * side * 64, 64), act4=act(),
            dense2=nn.Linear(64, num_classes),
        )
    )  # fmt: skip
    return init_weights(net, init)
