"""Bad input through the real scripts: exit 2, one `error:` line on stderr, no traceback, nothing
written. (Every case of the kind is checked in-process, for its message: tests/unit/test_bad_input.py,
test_load_classifier.py, test_images.py, test_download.py.)"""

import pickle
import shutil

import pytest

from ..artifacts import RunsACommand, black_png
from ..conftest import copy_project, run_cli, write_mirror

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path / "project")


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


def test_a_bad_setting_stops_train_before_any_work(project):
    result = run_cli(["python", "src/train.py", "model.activation=swish"], cwd=project)
    assert_one_clear_line(result, "model.activation='swish' is not a known activation")
    assert written_outputs(project) == [] and not (project / "mlflow.db").exists()


def test_an_unknown_key_is_hydras_message_on_one_line_and_leaves_no_hydra_run_directory(project):
    result = run_cli(["python", "src/train.py", "trainer.max_epoch=1"], cwd=project)
    assert_one_clear_line(result, "Could not override 'trainer.max_epoch'. To append to your config use "
                          "+trainer.max_epoch=1")  # fmt: skip
    assert not (project / "outputs").exists() and not (project / "mlflow.db").exists()


def test_a_setting_refused_inside_the_hydra_job_leaves_no_run_directory(project):
    result = run_cli(["python", "src/train.py", "trainer.max_epochs=0"], cwd=project)
    assert_one_clear_line(result, "trainer.max_epochs=0 is invalid")
    assert not (project / "outputs").exists() and written_outputs(project) == []


def test_an_output_directory_that_cannot_be_made_is_named(project):
    result = run_cli(["python", "src/train.py", "paths.model_dir=/proc/x/models"], cwd=project)
    assert_one_clear_line(result, "error: cannot create /proc/x/models/: /proc/ takes no new files (")
    assert not (project / "outputs").exists() and written_outputs(project) == []


def test_an_unknown_choice_in_a_sweep_stops_it_before_hydra_starts(project):
    result = run_cli(["python", "src/train.py", "-m", "optimizer=adam,adagrad"], cwd=project)
    assert_one_clear_line(result)
    assert result.stderr.strip() == (
        "error: In 'knobs/default': Could not find 'optimizer/adagrad' Available options in 'optimizer': "
        "adam, adamw, rmsprop, sgd"
    )
    assert written_outputs(project) == [] and not (project / "multirun").exists()


def test_download_with_no_reachable_mirror_names_each_and_mnist_mirror(project, tmp_path):
    result = run_cli(
        ["python", "src/download.py", f"data.download.mirrors=[{tmp_path / 'nothing'},http://127.0.0.1:9/]"],
        cwd=project,
    )
    assert_one_clear_line(result, "could not get train-images-idx3-ubyte.gz from any mirror",
                          "http://127.0.0.1:9/ (", "MNIST_MIRROR", chatter=True)  # fmt: skip
    assert written_outputs(project) == []


def test_train_prepares_missing_data_and_fails_cleanly_without_a_mirror(project, tiny):
    result = run_cli(["python", "src/train.py", *tiny.overrides(), "data.download.mirrors=[]"], cwd=project)
    assert_one_clear_line(result, "no mirrors configured", "MNIST_MIRROR", chatter=True)
    assert not (project / "models").exists()


def test_predict_refuses_a_checkpoint_that_would_run_code_without_running_it(project, tmp_path):
    checkpoint, image = tmp_path / "bad.ckpt", black_png(tmp_path / "digit.png", 28, 28)
    checkpoint.write_bytes(pickle.dumps(RunsACommand(tmp_path / "ran"), protocol=2))
    result = run_cli(["python", "src/predict.py", "--checkpoint", str(checkpoint), str(image)], cwd=project)
    fault = "holds pickled Python objects (posix.system), not only weights, and was refused"
    assert_one_clear_line(result, f"error: {checkpoint} {fault}", "python src/train.py")
    assert "weights_only" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    ("script", "how"),
    [("train.py", "truncated"), ("train.py", "header zeroed"), ("evaluate.py", "pages overwritten"),
     ("runs.py", "truncated"), ("search.py", "header zeroed")],
)  # fmt: skip
def test_a_damaged_mlflow_db_is_one_line_naming_it_and_the_fix_and_left_as_it_was(project, tiny, script, how):
    from mlflow import MlflowClient

    from ..unit.test_store import damage

    database = project / "mlflow.db"
    if script == "evaluate.py":  # a trained model, then the store damaged
        mirror = {"MNIST_MIRROR": str(write_mirror(project.parent / "mirror", tiny.raw))}
        trained = run_cli(["python", "src/train.py", *tiny.overrides()], cwd=project, env=mirror, timeout=300)
        assert trained.returncode == 0, trained.stderr[-2000:]
        shutil.rmtree(project / "mlruns")
        evaluated_before = sorted(p.name for p in (project / "reports").iterdir())
    else:
        MlflowClient(f"sqlite:///{database}").create_experiment("earlier work")
    damage(database, how)
    before = database.read_bytes()
    args = [*tiny.overrides(), "search.n_trials=1"] if script == "search.py" else tiny.overrides()
    result = run_cli(["python", f"src/{script}", *args], cwd=project, timeout=300)
    assert_one_clear_line(result, f"error: {database} is not a readable MLflow store (",
                          f"restore it from a backup, or move it aside (mv {database} {database}.damaged)",
                          chatter=True)  # fmt: skip
    assert database.read_bytes() == before
    assert not (project / "mlruns").exists() and not (project / "optuna.db").exists()
    if script == "evaluate.py":
        assert sorted(p.name for p in (project / "reports").iterdir()) == evaluated_before  # no metrics.json
    elif script != "train.py":  # (train prepares missing data first)
        assert written_outputs(project) == []
