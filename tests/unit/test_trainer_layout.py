"""The two CPU speed-ups of the training step change no result: channels-last weights and
deterministic mode without its NaN fill of new tensors."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from digitpipe import environment
from digitpipe.config.settings import validate
from digitpipe.models.checkpoint import load_classifier
from digitpipe.models.classifier import DigitClassifier
from digitpipe.training.build import build_callbacks, make_trainer
from digitpipe.training.layout import ChannelsLast

from ..artifacts import HPARAMS
from ..conftest import compose_config

CONVS = ("conv1", "conv2", "conv3")


@pytest.fixture(autouse=True)
def torch_flags():
    """Trainer(deterministic=True) and make_trainer set process-wide flags; put them back."""
    with environment.restored():
        yield


def batches() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(96, 1, 28, 28, generator=generator)
    return DataLoader(TensorDataset(images, torch.arange(96) % 10), batch_size=32)


def fit(
    tmp_path, callbacks: list[L.Callback], nan_fill: bool = False, steps: int = 6
) -> tuple[DigitClassifier, L.Trainer]:
    """`steps` RMSprop steps from seed 0, in deterministic mode, with or without the NaN fill."""
    torch.manual_seed(0)
    model = DigitClassifier(**HPARAMS, optimizer=functools.partial(torch.optim.RMSprop, lr=0.01))
    trainer = L.Trainer(max_steps=steps, deterministic=True, callbacks=callbacks, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", default_root_dir=tmp_path)  # fmt: skip
    torch.utils.deterministic.fill_uninitialized_memory = nan_fill  # after the Trainer set the mode
    trainer.fit(model, batches())
    return model, trainer


def weights(model: DigitClassifier) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_make_trainer_keeps_deterministic_algorithms_and_drops_only_the_nan_fill():
    torch.utils.deterministic.fill_uninitialized_memory = True
    cfg = compose_config()
    make_trainer(cfg, validate(cfg), logger=False, enable_checkpointing=False)
    assert torch.are_deterministic_algorithms_enabled()  # trainer.deterministic: true, as configured
    assert torch.utils.deterministic.fill_uninitialized_memory is False


@pytest.mark.parametrize("layout", [[], [ChannelsLast()]], ids=["nchw", "channels_last"])
def test_training_without_the_nan_fill_is_bit_identical_to_training_with_it(tmp_path, layout):
    with_fill, _ = fit(tmp_path, layout, nan_fill=True)
    without = weights(fit(tmp_path, layout, nan_fill=False)[0])
    for name, tensor in weights(with_fill).items():
        assert torch.equal(tensor, without[name]), name
        assert torch.isfinite(tensor).all(), name


def test_channels_last_trains_the_same_network_reproducibly(tmp_path):
    reference, _ = fit(tmp_path, [])
    first, _ = fit(tmp_path, [ChannelsLast()])
    second = weights(fit(tmp_path, [ChannelsLast()])[0])
    for conv in CONVS:  # conv1's (32, 1, 3, 3) weight is both; the others are NHWC only
        weight = getattr(first.net, conv).weight
        assert weight.is_contiguous(memory_format=torch.channels_last), conv
        assert weight.is_contiguous() is (conv == "conv1"), conv
        assert getattr(reference.net, conv).weight.is_contiguous()
    for name, tensor in weights(first).items():
        assert torch.equal(tensor, second[name]), name  # same seed, same machine: same bits


def test_channels_last_computes_the_same_outputs_and_gradients():
    """The same arithmetic in another order. Compared on one step: over several, RMSprop's division
    by the root of near-zero running averages turns rounding differences into visible ones."""
    torch.manual_seed(0)
    nchw = DigitClassifier(**HPARAMS)
    nhwc = DigitClassifier(**HPARAMS)
    nhwc.load_state_dict(nchw.state_dict())
    ChannelsLast().setup(None, nhwc, "fit")
    images, labels = next(iter(batches()))
    losses = []
    for model in (nchw, nhwc):
        logits = model(images)
        losses.append(torch.nn.functional.cross_entropy(logits, labels))
        losses[-1].backward()
    torch.testing.assert_close(losses[1], losses[0], rtol=0, atol=1e-6)
    for (name, a), (_, b) in zip(nchw.named_parameters(), nhwc.named_parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_channels_last_checkpoint_loads_into_the_plain_network_with_the_same_outputs(tmp_path):
    model, trainer = fit(tmp_path, [ChannelsLast()])
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    loaded = load_classifier(tmp_path / "last.ckpt")
    assert all(getattr(loaded.net, conv).weight.is_contiguous() for conv in CONVS)
    images = next(iter(batches()))[0]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), rtol=0, atol=1e-5)


def test_the_default_config_trains_channels_last_and_can_be_told_not_to():
    assert any(isinstance(c, ChannelsLast) for c in build_callbacks(compose_config()))
    off = compose_config(["~callbacks.channels_last"])
    assert not any(isinstance(c, ChannelsLast) for c in build_callbacks(off))
