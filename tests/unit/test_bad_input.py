"""Bad input a user can give, in-process: one line naming the value and the fix, nothing written.

tests/integration/test_cli_errors.py runs a few of these through the real scripts, for the exit
status and the single `error:` line on stderr.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from digitpipe.cli import check_overrides
from digitpipe.config.settings import validate
from digitpipe.data.download import MIRROR_ENV
from digitpipe.data.source import dataset_source
from digitpipe.errors import ConfigError, DataError, DownloadError

from ..conftest import FILE_NAMES, ROOT, compose_config


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("model.activation=swish", ["model.activation='swish' is not a known activation",
                                    "relu, leaky_relu, sigmoid, tanh, elu, gelu, silu"]),
        ("optimizer.lr=0", ["optimizer.lr=0 is invalid: the learning rate must be a positive number"]),
        ("optimizer.lr=-1e-3", ["optimizer.lr=-0.001 is invalid"]),
        ("data.batch_size=0", ["data.batch_size=0 is invalid"]),
        ("trainer.max_epochs=0", ["trainer.max_epochs=0 is invalid"]),
        ("seed=abc", ["seed='abc' is invalid: the seed must be an integer from 0 to 4294967295",
                      "(e.g. seed=42)"]),
        ("train_step.steps_per_batch=0", ["train_step.steps_per_batch=0 is invalid: give auto or a whole"]),
        ("train_step.cuda_graph=true", ["train_step.cuda_graph=true cannot be used here: the training does "
                                        "not run on a CUDA GPU", "Use train_step.cuda_graph=auto or false"]),
        ("resume=[1]", ["resume=[1] is invalid: use auto, true, false or the id of an interrupted run"]),
        ("distributed.batch_scope=node", ["distributed.batch_scope='node' must be one of: global, "
                                          "per_device"]),
    ],
)  # fmt: skip
def test_a_bad_training_setting_is_one_line_naming_it_and_the_fix(monkeypatch, override, fragments):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as refused:
        validate(compose_config([override]))
    message = str(refused.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


CHOICES = "Could not find 'optimizer/adagrad' Available options in 'optimizer': adam, adamw, rmsprop, sgd"


@pytest.mark.parametrize(
    ("args", "config_name", "message"),
    [
        (["optimizer=adagrad"], "config", CHOICES),
        (["-m", "optimizer=adam,adagrad"], "config", CHOICES),  # a sweep's every value
        (["foo=1"], "config", "Could not override 'foo'. To append to your config use +foo=1"),
        (["optimizer.learning_rate=0.1"], "config", "Could not override 'optimizer.learning_rate'. "
         "To append to your config use +optimizer.learning_rate=0.1"),
        (["-m", "model.activation=relu,tanh", "trainer.max_epoch=1"], "config", "Could not override "
         "'trainer.max_epoch'. To append to your config use +trainer.max_epoch=1"),
        (["search.n_trial=3"], "search_config", "Could not override 'search.n_trial'."),
        (["model.activation=[1"], "config", "no viable alternative at input '[1'"),
    ],
)  # fmt: skip
def test_an_unknown_key_or_choice_is_hydras_own_message_on_one_line(args, config_name, message):
    with pytest.raises(ConfigError) as refused:
        check_overrides(args, ROOT / "conf", config_name)
    assert message in str(refused.value) and "\n" not in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    "args",
    [["optimizer=adam", "optimizer.betas=[0.9,0.99]"],  # a key of the chosen group
     ["experiment=fast", "trainer.max_epochs=3"], ["+trainer.limit_train_batches=2"],
     ["~callbacks.channels_last"], ["hydra.run.dir=elsewhere"], ["-m", "optimizer=adam,sgd", "seed=1,2"],
     ["-cd", ".", "-cn", "params"]],
)  # fmt: skip
def test_known_keys_additions_removals_and_hydra_settings_pass(args):
    check_overrides(args, ROOT / "conf", "config")


@pytest.fixture
def source(tmp_path, tiny, monkeypatch):
    """The dataset a config on the tiny files asks for, in tmp_path, with no mirror but the test's."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)

    def make(*extra: str, checksums: bool = True):
        settings = tiny.overrides() if checksums else [o for o in tiny.overrides() if "sha256" not in o]
        processed = tmp_path / "processed"
        paths = [f"paths.raw_dir={tmp_path / 'raw'}", f"paths.dataset={processed / 'mnist.pt'}",
                 f"paths.stats={processed / 'stats.json'}", "data.download.mirrors=[]"]  # fmt: skip
        return dataset_source(compose_config([*settings, *paths, *extra]))

    return make


def test_a_mirror_whose_files_are_not_mnist_is_refused_by_their_checksums(source, tiny_mirror, tmp_path):
    # the tiny files are valid gzip IDX files, but not MNIST, whose checksums the config holds
    with pytest.raises(DownloadError) as refused:
        source(f"data.download.mirror={tiny_mirror}", checksums=False).download()
    assert f"{tiny_mirror} (checksum mismatch" in str(refused.value) and "MNIST_MIRROR" in str(refused.value)
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


def raw_dir_with(tmp_path, raw: dict[str, bytes]):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for key, content in raw.items():
        (raw_dir / FILE_NAMES[key]).write_bytes(content)
    return raw_dir


def test_a_malformed_idx_header_stops_preprocess_naming_the_file(source, tiny, tmp_path):
    raw = {**tiny.raw, "test_labels": b"\x00\x00\x08\x03" + tiny.raw["test_labels"][4:]}  # claims 3 dims
    raw_dir_with(tmp_path, raw)
    checksum = hashlib.sha256(raw["test_labels"]).hexdigest()  # right for the file: the header is wrong
    with pytest.raises(DataError, match="test_labels: bad IDX magic number 0x00000803"):
        source(f"data.files.test_labels.sha256={checksum}").preprocess()
    assert not (tmp_path / "processed").exists()


def test_a_raw_file_with_a_flipped_byte_is_refused_before_it_becomes_data(source, tiny, tmp_path):
    flipped = bytearray(tiny.raw["train_images"])
    flipped[1000] ^= 0xFF  # a pixel: the IDX file still parses
    raw_dir = raw_dir_with(tmp_path, {**tiny.raw, "train_images": bytes(flipped)})
    expected = hashlib.sha256(tiny.raw["train_images"]).hexdigest()
    with pytest.raises(DataError) as refused:
        source().preprocess()
    assert str(refused.value) == (
        f"{raw_dir / FILE_NAMES['train_images']} has sha256 {hashlib.sha256(flipped).hexdigest()[:12]}..., "
        f"expected {expected[:12]}... (data.files.train_images); it is corrupt: delete it and re-run "
        "download (python src/download.py)"
    )
    assert not (tmp_path / "processed").exists()
