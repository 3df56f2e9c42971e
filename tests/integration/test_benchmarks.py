"""Every script under benchmarks/ runs to its end in a tiny mode and prints the figures it exists for.

Each runs as a user runs it, in a project copy (benchmarks/ and tests/ beside src/) on the generated
tiny data: 500 training images at batch 32, 16 steps an epoch. What needs a GPU or Keras skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ..conftest import ROOT, Tiny, copy_project, run_cli, write_mirror

pytestmark = pytest.mark.slow

STEPS = 16  # an epoch of the tiny data: 600 training images less 100 for validation, at batch 32
NUMBER = r"(-?\d+(?:\.\d+)?)"
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ON_CUDA = pytest.param("cuda", marks=NO_CUDA)


@dataclass
class Bench:
    project: Path
    mirror: Path
    tiny: Tiny

    def run(self, *args: str) -> str:
        """`args` run in the project copy on the tiny mirror; their stdout, once they succeeded."""
        done = run_cli(list(args), cwd=self.project, env={"MNIST_MIRROR": str(self.mirror)})
        assert done.returncode == 0, f"{args[1]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        return done.stdout

    def script(self, name: str, *args: str, overrides: bool = True) -> str:
        """`python benchmarks/<name> args` with the tiny data's overrides (one epoch) last."""
        tiny = self.tiny.overrides({"trainer.max_epochs": 1}) if overrides else []
        return self.run("python", f"benchmarks/{name}", *args, *tiny)


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_raw) -> Bench:
    """A project copy with benchmarks/ and tests/ (team_server.py and gpu_session.sh use them), so
    that nothing a script writes (data, Hydra's outputs, stores) lands in this checkout."""
    base = tmp_path_factory.mktemp("bench")
    project = copy_project(base / "project")
    for name in ("benchmarks", "tests"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    return Bench(project, write_mirror(base / "mirror", tiny_raw), Tiny(tiny_raw))


def figures(pattern: str, text: str) -> list[float]:
    """The numbers `pattern`'s groups capture in the first line of `text` it matches (it must)."""
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"no line matches {pattern!r} in:\n{text}"
    return [float(group) for group in found.groups()]


def table(text: str) -> dict[str, list[str]]:
    """A Markdown table's rows in `text`: first cell -> the others (header and rule left out)."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()]
    rows = [row for row in rows if len(row) > 2 and set(row[1]) != {"-"}]
    return {row[0]: row[1:] for row in rows[1:]}


def seconds(cell: str) -> float:
    return float(cell.removesuffix(" s"))


def test_epoch_time_prints_the_plain_and_lightning_epochs_and_their_ratio(bench):
    out = bench.script("epoch_time.py", "--repeats", "1", "--also", "~callbacks.channels_last")
    assert "500 images, batch 32" in out
    (plain,) = figures(rf"^plain PyTorch loop\s+median\s+{NUMBER} s/epoch", out)
    (lightning,) = figures(rf"^Lightning module\s+median\s+{NUMBER} s/epoch", out)
    ratio, best = figures(rf"^ratio Lightning / plain: median {NUMBER}, best {NUMBER}", out)
    assert plain > 0 and lightning > 0 and ratio == best
    assert ratio == pytest.approx(lightning / plain, rel=0.02, abs=0.01)
    figures(rf"^ratio Lightning, ~callbacks.channels_last / Lightning: median {NUMBER}", out)


def test_diagnostics_overhead_prints_both_epochs_and_the_overhead(bench):
    out = bench.script("diagnostics_overhead.py", "--repeats", "1")
    assert f"{STEPS} steps/epoch, activation relu" in out
    epoch = rf"median\s+{NUMBER} s/epoch \(\s*{NUMBER} ms/step\)"
    off, off_ms = figures(rf"^diagnostics off\s+{epoch}", out)
    on, _ = figures(rf"^diagnostics on\s+{epoch}", out)
    assert off_ms == pytest.approx(1000 * off / STEPS, rel=0.02, abs=0.01)
    (overhead,) = figures(rf"^overhead: \+?{NUMBER}%", out)
    assert overhead == pytest.approx(100 * (on / off - 1), abs=1)


def test_ddp_scaling_prints_the_speedup_of_two_processes_against_one(bench):
    out = bench.script("ddp_scaling.py", "--only", "plain DDP")
    row = rf"\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}%\s+{NUMBER}$"  # s/epoch, speedup, efficiency, val/acc
    one = figures(rf"^1 process, 2 threads{row}", out)
    two = figures(rf"^2 processes, global batch 64, plain DDP settings{row}", out)
    assert one[1:3] == [1.0, 100.0]
    assert two[1] == pytest.approx(one[0] / two[0], rel=0.02, abs=0.01)
    assert two[2] == pytest.approx(100 * two[1] / 2, abs=1)  # the speedup per process
    assert 0 < one[3] <= 1 and 0 < two[3] <= 1
    assert "static graph" not in out  # --only left the other settings out


def test_profile_fit_shares_the_fit_among_its_parts(bench):
    out = bench.script("profile_fit.py")
    steps, fit = figures(rf"^\S+, {NUMBER} steps, 1 epoch\(s\), fit {NUMBER} s", out)
    assert steps == STEPS
    parts = {part: [float(cell.rstrip("%")) for cell in cells] for part, cells in table(out).items()}
    assert {"backward", "forward, loss, metrics", "optimizer update (RMSprop)"} <= parts.keys()
    assert sum(part[0] for part in parts.values()) == pytest.approx(fit, abs=0.01 * len(parts))
    for part_s, ms_per_step, _ in parts.values():
        assert ms_per_step == pytest.approx(1000 * part_s / STEPS, abs=0.01 + 1000 * 0.005 / STEPS)


def test_recipes_prints_a_row_per_recipe_and_writes_them_as_json(bench, tmp_path):
    results = tmp_path / "recipes.json"
    recipe = "fast recipe=experiment=fast"
    out = bench.script("recipes.py", "--only-extra", "--recipe", recipe, "--json", str(results), "--common")
    (row,) = table(out).values()  # precision, epochs, wall, fit, steps/s, val acc, test acc
    fast = json.loads(results.read_text())["fast recipe"]
    assert (fast["epochs"], fast["steps"]) == (1, STEPS)
    assert row[:2] == [fast["precision"], "1"] and seconds(row[3]) == round(fast["fit_s"], 1)
    assert float(row[4]) == pytest.approx(STEPS / fast["fit_s"], abs=1)
    assert float(row[6]) == pytest.approx(fast["test_acc"], abs=1e-4) and 0 < fast["test_acc"] <= 1


def test_train_cli_prints_a_trainings_figures(bench):
    result = json.loads(bench.script("train_cli.py").strip().splitlines()[-1])
    assert (result["epochs"], result["steps"]) == (1, STEPS)
    assert result["wall_s"] > result["fit_s"] > 0
    assert 0 < result["val_acc"] <= 1 and 0 < result["test_acc"] <= 1
    assert result["precision"] in ("32-true", "bf16-mixed")


def test_versions_trains_the_same_under_both_commits(bench):
    out = bench.script("versions.py", "--base", "HEAD", "--rounds", "1")
    run = rf"wall\s+{NUMBER} s\s+fit\s+{NUMBER} s\s+val acc {NUMBER}\s+test acc {NUMBER}"
    base = figures(rf"^round 1 base HEAD\s+{run}", out)
    this = figures(rf"^round 1 this checkout\s+{run}", out)
    assert base[2:] == this[2:]  # the base commit is this code: the same training, to the last digit
    for key, index in (("wall_s", 0), ("fit_s", 1)):
        new, old, ratio = figures(rf"^{key}: median {NUMBER} against {NUMBER}, ratio {NUMBER}", out)
        assert (new, old) == (this[index], base[index])
        assert ratio == pytest.approx(new / old, rel=0.01)
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=bench.project, text=True, capture_output=True)
    assert len(worktrees.stdout.splitlines()) == 1  # the base's was removed


def test_vs_keras_without_keras_compares_the_plain_loop_and_the_pipeline(bench):
    out = bench.script("vs_keras.py", "--no-keras", "--epochs", "1", "--rounds", "1", "--")
    rows = table(out)  # fit, s/epoch, ms/step, vs the first, test acc
    assert list(rows) == ["plain PyTorch loop", "python src/train.py"]
    assert rows["plain PyTorch loop"][3] == "1.00x"
    for fit, _, ms, versus, accuracy in rows.values():
        assert seconds(fit) > 0 and float(versus.removesuffix("x")) > 0 and 0 < float(accuracy) <= 1
        assert float(ms) == pytest.approx(1000 * seconds(fit) / STEPS, rel=0.1, abs=0.1)


def test_seed_keras_trains_the_seeds_model_on_the_idx_files(bench):
    pytest.importorskip("keras", reason="Keras/TensorFlow not installed (pip install -e '.[bench]')")
    out = bench.script("seed_keras.py", "--mirror", str(bench.mirror), "--epochs", "1", overrides=False)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["steps_per_epoch"] == 10 and len(result["epoch_s"]) == 1  # 600 images at batch 64
    assert result["fit_s"] > 0 and 0 <= result["test_acc"] <= 1


@pytest.mark.parametrize("device", ["cpu", ON_CUDA])
def test_step_overhead_prints_each_variants_ms_per_step(bench, device):
    args = ["--device", device, "--steps", "2", "--repeats", "1", "--skip", "compile"]
    rows = table(bench.script("step_overhead.py", *args, overrides=False))  # ms/step, 5-epoch fit, ratio
    assert "eager fp32 channels_last" in rows and not any("compile" in label for label in rows)
    assert rows["eager fp32"][2] == "1.000x"
    assert ("the whole step as one CUDA graph" in rows) == (device == "cuda")
    for ms, fit, _ in rows.values():
        assert seconds(fit) == pytest.approx(float(ms) * 5 * 860 / 1000, rel=0.01, abs=0.1)


def test_search_prints_trials_per_hour_and_per_trial_overheads(bench):
    out = bench.script("search.py", "--trials", "2", "--fresh", "1")
    for name in ("1 worker", "2 workers", "1 worker, median pruner"):
        trials, wall, rate = figures(rf"^{name}: {NUMBER} trials in {NUMBER} s wall \({NUMBER} trials/h", out)
        assert trials == 2 and rate == pytest.approx(3600 * 2 / wall, rel=0.01, abs=1)
    figures(rf"^per-trial overhead \(wall minus fit\), in-process: median {NUMBER} s", out)
    figures(rf"^per-trial overhead, a fresh python src/train.py per trial: median {NUMBER} s of 1$", out)
    figures(rf"^2 workers / 1 worker: {NUMBER}x trials per hour; median pruner / none: {NUMBER}x$", out)


def test_team_server_prints_what_the_team_store_costs_against_sqlite(bench):
    out = bench.script("team_server.py", "--rounds", "1")
    for store in ("sqlite", "team"):
        rows = figures(rf"^round 1 {store}: wall {NUMBER} s, fit {NUMBER} s, {NUMBER} metric rows", out)[2]
        assert rows > 0
    labels = ("one request", "one epoch's metrics", "one run's artifacts", "the fit", "python src/train.py")
    for label in labels:
        sqlite, team, more = figures(rf"^{re.escape(label)}.*\s{NUMBER} s\s+{NUMBER} s\s+\+?{NUMBER} s$", out)
        assert more == pytest.approx(team - sqlite, abs=0.011)


def test_gpu_session_is_a_valid_script_wherever_it_cannot_run():
    """On a CPU its six recipes would repeat recipes.py's, tested above, for minutes: checked for syntax."""
    checked = subprocess.run(
        ["bash", "-n", str(ROOT / "benchmarks" / "gpu_session.sh")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


@NO_CUDA
def test_gpu_session_runs_its_tests_and_recipes(bench, tmp_path):
    tiny = bench.tiny.overrides({"trainer.max_epochs": 1})
    bench.run("bash", "benchmarks/gpu_session.sh", str(tmp_path), *tiny)
    log = (tmp_path / "log").read_text()
    assert re.search(r"^torch \S+ lightning \S+$", log, re.MULTILINE) and "CPU bf16 units:" in log
    assert re.search(r"^\d+ passed", log, re.MULTILINE), log  # the CUDA tests (they skip without one)
    recipes = json.loads((tmp_path / "gpu_recipes.json").read_text())
    assert "the fast recipe (auto: eager steps, it has a scheduler)" in recipes and len(recipes) == 6
    assert all((r["epochs"], r["steps"]) == (1, STEPS) and 0 < r["test_acc"] <= 1 for r in recipes.values())
