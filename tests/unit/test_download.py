import gzip

import pytest

from digitpipe.data.download import (
    DatasetFile,
    MirrorFailure,
    decompress_and_verify,
    download_dataset,
    file_url,
    mirror_order,
)
from digitpipe.errors import DownloadError

from ..conftest import FILE_NAMES, files_config


def specs(raw):
    return [DatasetFile(**f) for f in files_config(raw).values()]


def test_the_environment_mirror_goes_first_then_the_override_then_the_defaults():
    order = mirror_order(["https://a/", "https://b/"], "/data/x", {"MNIST_MIRROR": "https://b/"})
    assert order == ["https://b/", "/data/x", "https://a/"]
    assert mirror_order(["https://a/"], None, {}) == ["https://a/"]


def test_a_plain_directory_becomes_a_file_url(tmp_path):
    assert file_url(str(tmp_path), "f.gz") == (tmp_path / "f.gz").as_uri()
    assert file_url("https://host/mnist", "f.gz") == "https://host/mnist/f.gz"


def test_a_relative_directory_is_relative_to_the_project_also_from_a_dvc_temp_copy(tmp_path, monkeypatch):
    project = tmp_path / "project"
    temp_copy = project / ".dvc" / "tmp" / "exps" / "tmpabc"
    for workspace in (project, temp_copy):
        workspace.mkdir(parents=True, exist_ok=True)
        (workspace / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(temp_copy)
    assert file_url("../shared/mnist", "f.gz") == (tmp_path / "shared" / "mnist" / "f.gz").as_uri()


def test_a_recompressed_archive_with_the_right_content_is_accepted():
    spec = DatasetFile("f", "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae")
    assert decompress_and_verify(gzip.compress(b"foo", compresslevel=1), spec) == b"foo"


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (b"<html><body>Not found</body></html>", "served an HTML page"),
        (gzip.compress(b"foo" * 1000, mtime=0)[:40], "corrupt or truncated gzip"),
        (gzip.compress(b"bar", mtime=0), "checksum mismatch"),
    ],
    ids=["html-page", "truncated-gzip", "wrong-content"],
)
def test_bad_archives_are_refused_with_the_reason(archive, reason):
    spec = DatasetFile("f", "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae")
    with pytest.raises(MirrorFailure, match=reason):
        decompress_and_verify(archive, spec)


def test_files_come_from_a_directory_mirror_verified(tmp_path, tiny_mirror, tiny_raw):
    raw_dir = tmp_path / "raw"
    paths = download_dataset(specs(tiny_raw), [str(tiny_mirror)], raw_dir, timeout_s=5, deadline_s=60)
    assert [p.name for p in paths] == list(FILE_NAMES.values())
    assert (raw_dir / FILE_NAMES["train_labels"]).read_bytes() == tiny_raw["train_labels"]


def test_in_a_log_each_file_is_one_line_and_no_progress_bar(tmp_path, tiny_mirror, tiny_raw, capsys):
    """capsys' stderr is no terminal, as under `dvc repro` or CI: no carriage-return redraws."""
    download_dataset(specs(tiny_raw), [str(tiny_mirror)], tmp_path / "raw", timeout_s=5, deadline_s=60)
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"{name}.gz" for name in FILE_NAMES.values()]
    assert all(f"MB from {tiny_mirror}, checksum verified" in line for line in lines), lines


def test_verified_files_are_not_fetched_again(tmp_path, tiny_mirror, tiny_raw):
    raw_dir = tmp_path / "raw"
    download_dataset(specs(tiny_raw), [str(tiny_mirror)], raw_dir, timeout_s=5, deadline_s=60)
    before = {p: p.stat().st_mtime_ns for p in raw_dir.iterdir()}
    download_dataset(specs(tiny_raw), [str(tmp_path / "no-such-mirror")], raw_dir, timeout_s=5, deadline_s=60)
    assert {p: p.stat().st_mtime_ns for p in raw_dir.iterdir()} == before


def test_a_corrupt_local_file_is_replaced(tmp_path, tiny_mirror, tiny_raw):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / FILE_NAMES["test_labels"]).write_bytes(b"garbage")
    download_dataset(specs(tiny_raw), [str(tiny_mirror)], raw_dir, timeout_s=5, deadline_s=60)
    assert (raw_dir / FILE_NAMES["test_labels"]).read_bytes() == tiny_raw["test_labels"]


def test_when_every_mirror_fails_the_error_names_each_and_mnist_mirror(tmp_path, tiny_raw):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / f"{FILE_NAMES['train_images']}.gz").write_bytes(gzip.compress(b"wrong content"))
    with pytest.raises(DownloadError) as err:
        download_dataset(specs(tiny_raw), [str(tmp_path / "missing"), str(bad)], tmp_path / "raw", 5, 60)
    message = str(err.value)
    assert "\n" not in message
    assert f"{tmp_path / 'missing'} (" in message and f"{bad} (checksum mismatch" in message
    assert "MNIST_MIRROR" in message
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())
