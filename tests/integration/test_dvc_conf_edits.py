"""An edit under conf/ after `dvc repro` ran: the real `dvc repro` never says "up to date" while
conf/ composes to something params.yaml does not hold. It stops in one line naming the keys and
`dvc exp run`, and trains nothing; a comment-only edit passes; `dvc repro` on an untouched conf/
is as before."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from ..conftest import copy_project, run_cli, write_mirror

pytestmark = pytest.mark.slow

UP_TO_DATE = "Data and pipelines are up to date."


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny):
    """A project that picked the fast recipe (conf/experiment/fast.yaml) and ran `dvc repro` once."""
    base = tmp_path_factory.mktemp("conf-edits")
    project = copy_project(base / "project")
    config = project / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("  - experiment: null", "  - experiment: fast"))
    tiny.shrink(project)
    env = {"MNIST_MIRROR": str(write_mirror(base / "mirror", tiny.raw))}
    first = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    shutil.copytree(project / "conf", base / "conf-as-reproduced")
    return project, env, base / "conf-as-reproduced"


def model_digest(project: Path) -> str:
    return hashlib.sha256((project / "models" / "best.ckpt").read_bytes()).hexdigest()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


EDITS = {
    "an edited value": ("config.yaml", "seed: 42", "seed: 43", "seed=42 where conf/ has 43"),
    "a new key": ("model/convnet.yaml", "activation: relu", "activation: relu\ndropout: 0.25",
                  "model.dropout=None where conf/ has 0.25"),
    # (the fast recipe sets the optimizer and scheduler, so the group left to the defaults is another)
    "a changed group default": ("config.yaml", '  - diagnostics: "off"', '  - diagnostics: "on"',
                                "diagnostics=None where conf/ has {'_target_': 'digitpipe.diagnostics"),
    "an edit under conf/experiment/": ("experiment/fast.yaml", "lr: 0.005", "lr: 0.002",
                                       "optimizer.lr=0.005 where conf/ has 0.002"),
}  # fmt: skip


@pytest.mark.parametrize("case", EDITS)
def test_dvc_repro_after_an_edit_under_conf_stops_naming_the_keys_and_trains_nothing(project, case):
    project, env, reproduced = project
    name, old, new, named = EDITS[case]
    before = model_digest(project)
    edit(project / "conf" / name, old, new)
    try:
        result = run_cli(["dvc", "repro"], cwd=project, env=env)
    finally:
        shutil.rmtree(project / "conf")
        shutil.copytree(reproduced, project / "conf")
    assert result.returncode != 0 and UP_TO_DATE not in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: params.yaml is not what conf/ composes to: ") and named in line, line
    assert "run `dvc exp run` to train what conf/ says" in line
    assert "failed to reproduce 'check_conf'" in result.stderr
    assert model_digest(project) == before  # nothing trained
    again = run_cli(["dvc", "repro"], cwd=project, env=env)  # conf/ as it was: as before the edit
    assert again.returncode == 0 and UP_TO_DATE in again.stdout, again.stdout[-2000:]


def test_a_comment_only_edit_passes_the_check_and_reruns_nothing_else(project):
    project, env, reproduced = project
    before = model_digest(project)
    edit(project / "conf" / "config.yaml", "seed: 42", "seed: 42  # the seed of every run")
    try:
        result = run_cli(["dvc", "repro"], cwd=project, env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "Running stage 'check_conf'" in result.stdout
        assert "conf/ composes to params.yaml" in result.stdout
        for stage in ("download", "preprocess", "train", "evaluate"):
            assert f"Running stage '{stage}'" not in result.stdout, result.stdout
        assert model_digest(project) == before
        assert UP_TO_DATE in run_cli(["dvc", "repro"], cwd=project, env=env).stdout
    finally:
        shutil.rmtree(project / "conf")
        shutil.copytree(reproduced, project / "conf")
        run_cli(["dvc", "repro", "check_conf"], cwd=project, env=env)  # the lock as reproduced again
