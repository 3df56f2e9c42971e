"""Every way a checkpoint file can be bad ends in one DataError line naming the file and the fault."""

import functools
import os
import pickle

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from digitpipe.errors import DataError
from digitpipe.models.checkpoint import load_classifier
from digitpipe.models.classifier import DigitClassifier

from ..artifacts import HPARAMS, RunsACommand, checkpoint_dict, save_checkpoint


def load_error(path) -> str:
    with pytest.raises(DataError) as caught:
        load_classifier(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, message
    assert "weights_only" not in message  # torch's own message suggests turning it off
    assert "python src/train.py" in message  # the fix
    return message


def test_a_checkpoint_in_lightnings_format_loads_with_its_weights(tmp_path):
    saved = checkpoint_dict(activation="tanh", standardize=True)
    saved["state_dict"]["standardize.mean"].fill_(0.13)
    model = load_classifier(save_checkpoint(tmp_path / "best.ckpt", saved))
    assert model.hparams.activation == "tanh" and isinstance(model.net[1], nn.Tanh)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved["state_dict"][name]), name


def test_a_checkpoint_the_trainer_saved_loads(tmp_path):
    """The loader's checks must not refuse what Lightning itself writes (loop and optimizer state too)."""
    model = DigitClassifier(**HPARAMS, optimizer=functools.partial(torch.optim.SGD, lr=0.1))
    images, labels = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, DataLoader(TensorDataset(images, labels), batch_size=8))
    trainer.save_checkpoint(tmp_path / "trained.ckpt")
    loaded = load_classifier(tmp_path / "trained.ckpt")
    assert torch.equal(loaded.net[-1].weight, model.net[-1].weight)


def test_an_empty_file_is_named_as_empty(tmp_path):
    (tmp_path / "best.ckpt").touch()
    assert "is empty (0 bytes)" in load_error(tmp_path / "best.ckpt")


@pytest.mark.parametrize(
    "cut", [lambda data: os.urandom(3000), lambda data: data[: len(data) // 2]], ids=["random", "truncated"]
)
def test_random_bytes_or_a_truncated_checkpoint_are_not_a_checkpoint(tmp_path, cut):
    data = save_checkpoint(tmp_path / "good.ckpt").read_bytes()
    (tmp_path / "bad.ckpt").write_bytes(cut(data))
    assert "is not a PyTorch checkpoint, or is truncated" in load_error(tmp_path / "bad.ckpt")


@pytest.mark.parametrize("how", ["raw pickle", "torch.save"])
def test_a_pickle_whose_payload_would_run_a_command_is_refused_without_running_it(tmp_path, how):
    marker, path = tmp_path / "payload-ran", tmp_path / "evil.ckpt"
    if how == "raw pickle":
        path.write_bytes(pickle.dumps(RunsACommand(marker), protocol=2))
    else:
        torch.save({"state_dict": {}, "hyper_parameters": RunsACommand(marker)}, path)
    message = load_error(path)
    assert "holds pickled Python objects (posix.system)" in message
    assert "refused because loading them could run code" in message
    assert not marker.exists()


def test_a_pickled_module_instead_of_weights_is_refused(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.ckpt")
    assert "(torch.nn.modules.linear.Linear)" in load_error(tmp_path / "module.ckpt")


def test_another_modules_state_dict_is_not_a_lightning_checkpoint(tmp_path):
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "linear.pt")
    message = load_error(tmp_path / "linear.pt")
    assert "is not a Lightning checkpoint of this project's model (it holds bias, weight" in message


def test_a_lightning_checkpoint_of_another_model_names_the_hyperparameters(tmp_path):
    other = checkpoint_dict()
    other["hyper_parameters"] = {"activation": "relu", "hidden_size": 128, "lr": 0.1}
    message = load_error(save_checkpoint(tmp_path / "other.ckpt", other))
    assert "is a checkpoint of another model" in message
    assert "it lacks the hyper-parameters image_size, init, negative_slope, num_classes" in message
    assert "it has hyper-parameters this model does not take: hidden_size, lr" in message


def test_hyperparameters_that_build_no_network_are_named(tmp_path):
    checkpoint = checkpoint_dict()
    checkpoint["hyper_parameters"]["activation"] = "swish"
    message = load_error(save_checkpoint(tmp_path / "swish.ckpt", checkpoint))
    assert "has hyper-parameters that build no network (model.activation='swish' is not a known" in message


def test_a_weight_of_the_wrong_shape_is_named_with_both_shapes(tmp_path):
    checkpoint = checkpoint_dict()
    checkpoint["state_dict"]["net.dense1.weight"] = torch.zeros(64, 100)
    message = load_error(save_checkpoint(tmp_path / "reshaped.ckpt", checkpoint))
    assert "wrong shape for this network (1 tensor(s); " in message
    assert "net.dense1.weight is [64, 100], not [64, 576]);" in message


def test_weights_that_the_hyperparameters_do_not_describe_are_named(tmp_path):
    checkpoint = checkpoint_dict(standardize=True)
    checkpoint["hyper_parameters"]["standardize"] = False
    del checkpoint["state_dict"]["net.conv1.bias"]
    message = load_error(save_checkpoint(tmp_path / "mixed.ckpt", checkpoint))
    assert "holds the weights of another network (it lacks the weights net.conv1.bias; " in message
    assert "it has weights this model does not take: standardize.mean, standardize.std)" in message
