"""The processed dataset records what made it; a caller asking for another split gets it rebuilt in memory."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from digitpipe.data.datamodule import DigitsDataModule
from digitpipe.data.download import MIRROR_ENV
from digitpipe.data.source import dataset_md5, dataset_source
from digitpipe.errors import ConfigError

from ..conftest import compose_config, files_config


@pytest.fixture
def make_source(tmp_path, tiny, tiny_mirror, monkeypatch):
    """A DatasetSource from the composed config on tiny data (val_size=100), files under tmp_path."""
    monkeypatch.setenv(MIRROR_ENV, str(tiny_mirror))

    def make(*extra: str, processed: Path = tmp_path / "processed"):
        overrides = tiny.overrides() + [
            f"paths.raw_dir={tmp_path / 'raw'}",
            f"paths.dataset={processed / 'mnist.pt'}",
            f"paths.stats={processed / 'stats.json'}",
            "data.download.mirrors=[]",
        ]
        return dataset_source(compose_config([*overrides, *extra]))

    return make


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def notices(capsys) -> list[str]:
    """The notice lines on stderr (tqdm's bars share it, separated by carriage returns)."""
    err = capsys.readouterr().err
    return [part for line in err.splitlines() for part in line.split("\r") if part.startswith("notice:")]


def test_preprocess_writes_the_same_bytes_for_the_same_inputs(make_source):
    source = make_source()
    source.prepare()
    first = md5(source.dataset), md5(source.stats)
    source.preprocess()
    assert (md5(source.dataset), md5(source.stats)) == first


def test_the_dataset_and_its_stats_record_the_parameters_that_made_them(make_source, tiny_raw):
    source = make_source()
    source.prepare()
    expected = {
        "seed": 42,
        "val_size": 100,
        "image_size": 28,
        "num_classes": 10,
        "raw_sha256": {key: f["sha256"] for key, f in files_config(tiny_raw).items()},
    }
    assert torch.load(source.dataset, weights_only=True)["params"] == expected
    assert json.loads(source.stats.read_text())["params"] == expected


def test_a_dataset_made_with_val_size_100_gives_150_validation_images_when_asked_and_stays_untouched(
    make_source, capsys
):
    made = make_source()
    made.prepare()
    before = md5(made.dataset), made.dataset.stat().st_mtime_ns
    data = DigitsDataModule(make_source("data.val_size=150"), batch_size=32, eval_batch_size=100, seed=0)
    data.prepare_data()
    data.setup("fit")
    assert len(data.splits["val"]) == 150 and len(data.splits["train"]) == 600 - 150
    assert (md5(made.dataset), made.dataset.stat().st_mtime_ns) == before
    assert notices(capsys) == [
        f"notice: {made.dataset} was made with other parameters (val_size 100 -> 150); "
        f"the split is rebuilt in memory from {made.fetch.raw_dir}, the file is left as it is"
    ]


def test_a_rebuilt_split_and_its_md5_are_those_of_the_file_preprocess_would_write(make_source, tmp_path):
    make_source().prepare()
    seven = make_source("seed=7")
    rebuilt = seven.load()
    written = make_source("seed=7", processed=tmp_path / "seven")
    written.preprocess()
    assert rebuilt.md5 == md5(written.dataset) == dataset_md5(seven) == dataset_md5(written)
    on_disk = written.load().tensors
    assert rebuilt.tensors.keys() == on_disk.keys()
    assert all(torch.equal(rebuilt.tensors[key], on_disk[key]) for key in on_disk)
    assert not torch.equal(rebuilt.tensors["val_images"], make_source().load().tensors["val_images"])


def test_a_matching_dataset_is_used_as_it_is_without_the_raw_files(make_source, capsys):
    source = make_source()
    source.prepare()
    shutil.rmtree(source.fetch.raw_dir)
    data = DigitsDataModule(source, batch_size=32, eval_batch_size=100, seed=0)
    data.prepare_data()
    data.setup("fit")
    assert not source.fetch.raw_dir.exists()  # nothing was downloaded again
    assert len(data.splits["val"]) == 100
    assert data.data_md5 == md5(source.dataset)
    assert notices(capsys) == []


def test_a_dataset_that_records_no_parameters_counts_as_made_with_others(make_source, capsys):
    source = make_source()
    source.prepare()
    capsys.readouterr()
    tensors = {k: v for k, v in torch.load(source.dataset, weights_only=True).items() if k != "params"}
    torch.save(tensors, source.dataset)  # as the previous version wrote it
    before = md5(source.dataset)
    loaded = source.load()
    assert md5(source.dataset) == before
    assert all(torch.equal(loaded.tensors[key], tensors[key]) for key in tensors)
    (notice,) = notices(capsys)
    assert "was made with other parameters (it records none: an older version made it)" in notice


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "data.download.file_deadline_s=0",
            "data.download.file_deadline_s=0 is invalid: give a positive number of seconds",
        ),
        ("data.download.file_deadline_s=soon", "data.download.file_deadline_s='soon' is invalid"),
        ("data.download.timeout_s=-1", "data.download.timeout_s=-1 is invalid"),
        ("data.split_seed=abc", "data.split_seed='abc' is invalid: give an integer"),
    ],
)
def test_bad_data_settings_are_refused_in_one_line(make_source, override, message):
    with pytest.raises(ConfigError) as err:
        make_source(override)
    assert message in str(err.value) and "\n" not in str(err.value)
