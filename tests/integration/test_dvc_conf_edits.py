"""An edit under conf/ after `dvc repro` ran: the real `dvc repro` never says "up to date" while
conf/ composes to something the pipeline did not run. An edited knob (params.yaml holds the knobs,
which only `dvc exp run` recomposes) stops it in one line naming the keys and `dvc exp run`, and
trains nothing; an edited setting that is not a knob trains with its new value; a comment reruns
nothing. After `dvc exp run -S`, whose knobs params.yaml holds, `dvc repro` runs them: it never
refuses an experiment. Each test edits its own copy of the session's built project."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from ..conftest import run_cli

pytestmark = pytest.mark.slow

UP_TO_DATE = "Data and pipelines are up to date."


def model_digest(project: Path) -> str:
    return hashlib.sha256((project / "models" / "best.ckpt").read_bytes()).hexdigest()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def exp_run(project: Path, env: dict, *overrides: str) -> None:
    sets = [arg for override in overrides for arg in ("-S", override)]
    result = run_cli(["dvc", "exp", "run", *sets], cwd=project, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


EDITS = {
    "an edited value": ("knobs/default.yaml", "seed: 42", "seed: 43", "seed 42 -> 43"),
    "a new key": ("model/convnet.yaml", "activation: relu", "activation: relu\ndropout: 0.25",
                  "model.dropout None -> 0.25"),
    "a changed group default": ("knobs/default.yaml", "  - /optimizer: rmsprop", "  - /optimizer: adam",
                                "optimizer._target_ 'torch.optim.RMSprop' -> 'torch.optim.Adam'"),
    "an edit under conf/experiment/": ("experiment/fast.yaml", "lr: 0.005", "lr: 0.002",
                                       "optimizer.lr 0.005 -> 0.002"),
}  # fmt: skip


@pytest.mark.parametrize("case", EDITS)
def test_dvc_repro_after_a_knob_is_edited_under_conf_stops_naming_the_keys_and_trains_nothing(
    built_copy, case
):
    project, env = built_copy
    name, old, new, named = EDITS[case]
    if name.startswith("experiment/"):  # the recipe picked in conf/, composed into params.yaml
        edit(project / "conf" / "knobs" / "default.yaml", "  - /experiment: null", "  - /experiment: fast")
        exp_run(project, env)
    before = model_digest(project)
    edit(project / "conf" / name, old, new)
    result = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert result.returncode != 0 and UP_TO_DATE not in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: conf/ changed knobs since params.yaml was composed from it: "), line
    assert named in line and "run `dvc exp run` to train what conf/ says" in line, line
    assert "failed to reproduce 'check_conf'" in result.stderr
    assert model_digest(project) == before  # nothing trained
    edit(project / "conf" / name, new, old)  # conf/ as it was: as before the edit
    again = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert again.returncode == 0 and "Running stage 'train'" not in again.stdout, again.stdout[-2000:]


def test_an_edited_setting_that_is_not_a_knob_trains_with_its_new_value(built_copy):
    """Not in params.yaml (nor in `dvc exp show`): check_conf passes and writes it into the stages'
    config, which train and evaluate depend on, so they rerun with it; the data stages do not."""
    project, env = built_copy
    before = model_digest(project)
    edit(project / "conf" / "config.yaml", '  - diagnostics: "off"', '  - diagnostics: "on"')
    result = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for stage in ("check_conf", "train", "evaluate"):
        assert f"Running stage '{stage}'" in result.stdout, result.stdout
    for stage in ("download", "preprocess"):
        assert f"Running stage '{stage}'" not in result.stdout, result.stdout
    assert model_digest(project) != before
    assert (project / "reports" / "diagnostics.csv").is_file()  # it trained with diagnostics on
    run = json.loads((project / "reports" / "mlflow_run.json").read_text())["run_id"]
    assert run in result.stdout


def test_a_comment_or_an_unused_file_edited_passes_the_check_and_reruns_nothing_else(built_copy):
    project, env = built_copy
    before = model_digest(project)
    edit(project / "conf" / "knobs" / "default.yaml", "seed: 42", "seed: 42  # the seed of every run")
    edit(project / "conf" / "experiment" / "fast.yaml", "lr: 0.005", "lr: 0.002")  # not picked
    result = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Running stage 'check_conf'" in result.stdout
    assert "the stages run reports/stage_config.yaml" in result.stdout
    for stage in ("download", "preprocess", "train", "evaluate"):
        assert f"Running stage '{stage}'" not in result.stdout, result.stdout
    assert model_digest(project) == before
    assert UP_TO_DATE in run_cli(["dvc", "repro"], cwd=project, env=env).stdout


def test_after_dvc_exp_run_dvc_repro_runs_the_experiments_knobs_and_never_refuses(built_copy):
    """The workspace holds the experiment (`dvc exp run` applies it, as DVC does); then an edit of a
    setting that is not a knob makes stages rerun: with the experiment's knobs, not a refusal."""
    project, env = built_copy
    exp_run(project, env, "optimizer=adam", "optimizer.lr=0.003")
    assert UP_TO_DATE in run_cli(["dvc", "repro"], cwd=project, env=env).stdout
    edit(project / "conf" / "tiny.yaml", "eval_batch_size: 100", "eval_batch_size: 50")  # tiny data's
    result = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Running stage 'evaluate'" in result.stdout and "error:" not in result.stderr, result.stderr
    config = yaml.safe_load((project / "reports" / "stage_config.yaml").read_text())
    assert config["optimizer"]["_target_"] == "torch.optim.Adam" and config["optimizer"]["lr"] == 0.003
    assert config["data"]["eval_batch_size"] == 50
    assert UP_TO_DATE in run_cli(["dvc", "status"], cwd=project, env=env).stdout
