"""Bad input through the real CLIs: one clear line, non-zero exit, no traceback, nothing written."""

import pytest

from ..conftest import FILE_NAMES, copy_project, files_config, run_cli, tiny_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("project"))


def assert_one_clear_line(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith(("error:", "Error", "Could not"))]
    assert error_lines, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def written_outputs(project):
    return [p for d in ("models", "reports", "data") for p in (project / d).rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("model.activation=swish", ["model.activation='swish' is not a known activation",
                                    "relu, leaky_relu, sigmoid, tanh, elu, gelu, silu"]),
        ("optimizer.lr=0", ["optimizer.lr=0 is invalid: the learning rate must be a positive number"]),
        ("optimizer.lr=-1e-3", ["optimizer.lr=-0.001 is invalid"]),
        ("data.batch_size=0", ["data.batch_size=0 is invalid"]),
        ("trainer.max_epochs=0", ["trainer.max_epochs=0 is invalid"]),
    ],
)  # fmt: skip
def test_train_rejects_bad_settings_before_any_work(project, override, fragments):
    result = run_cli(["python", "src/train.py", override], cwd=project)
    assert_one_clear_line(result, *fragments)
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert written_outputs(project) == []
    assert not (project / "mlflow.db").exists()


@pytest.mark.parametrize("args", [["optimizer=adagrad"], ["-m", "optimizer=adam,adagrad"]])
def test_an_unknown_optimizer_lists_the_choices_in_one_line(project, args):
    result = run_cli(["python", "src/train.py", *args], cwd=project)
    assert_one_clear_line(result)
    assert result.stderr.strip() == (
        "error: optimizer=adagrad is not a known choice; choose one of: adam, adamw, rmsprop, sgd"
    )
    assert result.returncode == 2
    assert written_outputs(project) == []


def test_download_with_no_reachable_mirror_names_each_and_mnist_mirror(project, tmp_path):
    result = run_cli(
        ["python", "src/download.py", f"data.download.mirrors=[{tmp_path / 'nothing'},http://127.0.0.1:9/]"],
        cwd=project,
    )
    assert_one_clear_line(result, "could not get train-images-idx3-ubyte.gz from any mirror",
                          "http://127.0.0.1:9/ (", "MNIST_MIRROR")  # fmt: skip
    assert result.returncode == 2
    assert written_outputs(project) == []


def test_a_mirror_with_a_wrong_checksum_is_refused(project, tiny_mirror):
    # the tiny fixture files are valid gzip IDX files, but not MNIST: the checksums must catch it
    result = run_cli(["python", "src/download.py"], cwd=project, env={"MNIST_MIRROR": str(tiny_mirror)})
    assert_one_clear_line(result, f"{tiny_mirror} (checksum mismatch")
    assert written_outputs(project) == []


def test_a_malformed_idx_header_stops_preprocess_with_the_file_named(tmp_path, tiny_raw):
    project = copy_project(tmp_path / "p")
    raw = dict(tiny_raw)
    raw["test_labels"] = b"\x00\x00\x08\x03" + raw["test_labels"][4:]  # claims 3 dims
    raw_dir = project / "data" / "raw"
    raw_dir.mkdir(parents=True)
    for key, content in raw.items():
        (raw_dir / FILE_NAMES[key]).write_bytes(content)
    overrides = [f"data.files.{k}.sha256={v['sha256']}" for k, v in files_config(raw).items()]
    result = run_cli(["python", "src/preprocess.py", *overrides, "data.val_size=100"], cwd=project)
    assert_one_clear_line(result, "test_labels: bad IDX magic number 0x00000803")
    assert not (project / "data" / "processed").exists() or not any(
        (project / "data" / "processed").iterdir()
    )


def test_train_prepares_missing_data_and_fails_cleanly_without_a_mirror(project, tiny_raw):
    result = run_cli(
        ["python", "src/train.py", *tiny_overrides(tiny_raw, project), "data.download.mirrors=[]"],
        cwd=project,
    )
    assert_one_clear_line(result, "no mirrors configured", "MNIST_MIRROR")
    assert not (project / "models").exists()
