from digitpipe.paths import project_root, resolve, workspace_root
from digitpipe.tracking.store import artifact_location, tracking_uri


def test_workspace_is_the_nearest_directory_with_dvc_yaml(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "src" / "deep").mkdir(parents=True)
    assert workspace_root(tmp_path / "src" / "deep") == tmp_path


def dvc_git_project(directory):
    for name in (".dvc", ".git"):
        (directory / name).mkdir(parents=True)
    (directory / "dvc.yaml").write_text("stages: {}\n")
    return directory


def test_a_dvc_temp_experiment_copy_maps_back_to_the_project_dvc_names(tmp_path, monkeypatch):
    """`dvc exp run --temp` and queued runs run in a git clone under .dvc/tmp/exps/, with DVC_ROOT
    naming the workspace's DVC project."""
    copy = dvc_git_project(dvc_git_project(tmp_path) / ".dvc" / "tmp" / "exps" / "tmpab12")
    monkeypatch.chdir(copy)
    assert workspace_root() == copy
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert project_root() == tmp_path


def test_mlflow_defaults_to_sqlite_in_the_project_root_even_from_a_temp_copy(tmp_path, monkeypatch):
    copy = dvc_git_project(dvc_git_project(tmp_path) / ".dvc" / "tmp" / "exps" / "tmpab12")
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking_uri(None, env={}) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert artifact_location(tracking_uri(None, env={})) == (tmp_path / "mlruns").as_uri()


def test_the_environment_and_the_config_override_the_tracking_store():
    assert tracking_uri(None, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}) == "http://127.0.0.1:5000"
    assert tracking_uri("sqlite:///x.db", env={"MLFLOW_TRACKING_URI": "http://h"}) == "sqlite:///x.db"
    assert artifact_location("http://127.0.0.1:5000") is None


def test_relative_paths_resolve_against_the_workspace(tmp_path):
    assert resolve("data/raw", tmp_path) == tmp_path / "data" / "raw"
    assert resolve("/abs/x", tmp_path).as_posix() == "/abs/x"


def test_a_pipeline_in_a_subdirectory_records_into_the_projects_store(tmp_path, monkeypatch):
    study = tmp_path / "pipelines" / "study"
    study.mkdir(parents=True)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (study / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(study)
    assert workspace_root() == study  # its paths are its own
    assert project_root() == tmp_path  # its runs go where `mlflow ui` in the project looks
    assert tracking_uri(None, env={}) == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_a_sub_pipeline_that_is_a_dvc_project_of_its_own_records_into_the_outer_projects_store(
    tmp_path, monkeypatch
):
    """pipelines/<name>/ has its own .dvc/ (so the main `dvc exp show` has none of its columns): the
    project is the outermost DVC project of the git repository, for the study and for the copy DVC
    runs it in for `exp run --temp` (<study>/.dvc/tmp/exps/<tmp>/, a clone of the whole repository)."""
    study = dvc_git_project(tmp_path) / "pipelines" / "study"
    (study / ".dvc").mkdir(parents=True)
    (study / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(study)
    assert project_root() == tmp_path  # was the study's folder: its runs in a store nobody opens
    monkeypatch.setenv("DVC_ROOT", str(study))  # as in every stage DVC runs
    assert project_root() == tmp_path
    copy = dvc_git_project(study / ".dvc" / "tmp" / "exps" / "tmpab12") / "pipelines" / "study"
    (copy / ".dvc").mkdir(parents=True)
    monkeypatch.chdir(copy)
    assert project_root() == tmp_path  # was <study>: the copy's path up to its first .dvc
