"""Bad input through the real CLIs: one clear line, non-zero exit, no traceback, nothing written."""

import hashlib
import pickle

import pytest
import torch
from torch import nn

from ..artifacts import RunsACommand, black_png, checkpoint_dict, save_checkpoint
from ..conftest import FILE_NAMES, copy_project, files_config, project_with_raw_files, run_cli, tiny_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("project"))


def assert_one_clear_line(result, *fragments, chatter=False):
    """Exit 2, no traceback, and exactly one `error: ...` line on stderr, holding every fragment.

    That line is all stderr holds, unless `chatter` allows other lines before it (progress bars,
    mirror notices, Lightning's and MLflow's start-up lines in a stage that got that far).
    """
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in result.stderr, result.stderr
    assert chatter or lines == errors, result.stderr
    assert result.returncode == 2, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


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
        ("seed=abc", ["seed='abc' is invalid: the seed must be an integer from 0 to 4294967295",
                      "(e.g. seed=42)"]),
        ("train_step.steps_per_batch=0", ["train_step.steps_per_batch=0 is invalid: give auto or a whole"]),
        ("train_step.cuda_graph=true", ["train_step.cuda_graph=true cannot be used here: the training does "
                                        "not run on a CUDA GPU", "Use train_step.cuda_graph=auto or false"]),
    ],
)  # fmt: skip
def test_train_rejects_bad_settings_before_any_work(project, override, fragments):
    result = run_cli(["python", "src/train.py", override], cwd=project)
    assert_one_clear_line(result, *fragments)
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
                          "http://127.0.0.1:9/ (", "MNIST_MIRROR", chatter=True)  # fmt: skip
    assert result.returncode == 2
    assert written_outputs(project) == []


def test_a_mirror_with_a_wrong_checksum_is_refused(project, tiny_mirror):
    # the tiny fixture files are valid gzip IDX files, but not MNIST: the checksums must catch it
    result = run_cli(["python", "src/download.py"], cwd=project, env={"MNIST_MIRROR": str(tiny_mirror)})
    assert_one_clear_line(result, f"{tiny_mirror} (checksum mismatch", chatter=True)
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
    assert_one_clear_line(result, "no mirrors configured", "MNIST_MIRROR", chatter=True)
    assert not (project / "models").exists()


def test_preprocess_refuses_a_raw_file_with_a_flipped_byte(tmp_path, tiny_raw):
    project, overrides = project_with_raw_files(tmp_path / "p", tiny_raw)
    raw_dir = project / "data" / "raw"
    flipped = bytearray(tiny_raw["train_images"])
    flipped[1000] ^= 0xFF  # a pixel: the IDX file still parses
    (raw_dir / FILE_NAMES["train_images"]).write_bytes(flipped)
    result = run_cli(["python", "src/preprocess.py", *overrides, "data.val_size=100"], cwd=project)
    expected, actual = files_config(tiny_raw)["train_images"]["sha256"], hashlib.sha256(flipped).hexdigest()
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {raw_dir / FILE_NAMES['train_images']} has sha256 {actual[:12]}..., expected "
        f"{expected[:12]}... (data.files.train_images); it is corrupt: delete it and re-run download "
        "(python src/download.py)"
    )
    assert not (project / "data" / "processed").exists() or not any(
        (project / "data" / "processed").iterdir()
    )


def test_preprocess_rejects_a_seed_that_is_not_an_integer_before_any_work(tmp_path, tiny_raw):
    project, overrides = project_with_raw_files(tmp_path / "p", tiny_raw)
    raw_dir = project / "data" / "raw"
    args = ["python", "src/preprocess.py", *overrides, "data.val_size=100", "seed=abc"]
    result = run_cli(args, cwd=project)
    assert_one_clear_line(result, "seed='abc' is invalid: the seed must be an integer")
    assert [p for p in written_outputs(project) if raw_dir not in p.parents] == []
    assert not (project / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("write", "fault"),
    [
        (lambda path: path.touch(), "is empty (0 bytes)"),
        (lambda path: path.write_bytes(pickle.dumps(RunsACommand(path.parent / "ran"), protocol=2)),
         "holds pickled Python objects (posix.system), not only weights, and was refused"),
        (lambda path: torch.save(nn.Linear(2, 2).state_dict(), path),
         "is not a Lightning checkpoint of this project's model (it holds bias, weight"),
        (lambda path: torch.save({**checkpoint_dict(), "hyper_parameters": {"lr": 0.1}}, path),
         "is a checkpoint of another model"),
    ],
    ids=["empty", "payload", "another-modules-weights", "another-model"],
)  # fmt: skip
def test_predict_names_a_bad_checkpoint_and_its_fault_in_one_line(project, tmp_path, write, fault):
    checkpoint, image = tmp_path / "bad.ckpt", black_png(tmp_path / "digit.png", 28, 28)
    write(checkpoint)
    result = run_cli(["python", "src/predict.py", "--checkpoint", str(checkpoint), str(image)], cwd=project)
    assert_one_clear_line(result, f"error: {checkpoint} {fault}", "python src/train.py")
    assert "weights_only" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "ran").exists()


# PIL only warns about the first (over its limit), and raises for the second (over twice its limit)
@pytest.mark.parametrize(("width", "pixels"), [(10_000, "100,000,000"), (20_000, "200,000,000")])
def test_predict_refuses_an_image_over_pils_pixel_limit_in_one_line(project, tmp_path, width, pixels):
    checkpoint = save_checkpoint(tmp_path / "best.ckpt")
    huge = black_png(tmp_path / "huge.png", width, 10_000)  # a few KB on disk
    result = run_cli(["python", "src/predict.py", "--checkpoint", str(checkpoint), str(huge)], cwd=project)
    limit = "over the limit of 89,478,485 pixels"  # PIL's Image.MAX_IMAGE_PIXELS
    assert_one_clear_line(result, f"error: {huge} is too large: {pixels} pixels, {limit}")
    assert result.stdout == ""
