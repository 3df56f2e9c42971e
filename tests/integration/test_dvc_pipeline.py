"""`dvc repro`, `dvc exp run -S` and Hydra sweeps in a temp copy of the project, on tiny data."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from digitpipe.config.precision import resolve_precision

from ..conftest import copy_project, free_port, run_cli, write_mirror
from .conftest import copy_of
from .servers import start, stop

pytestmark = pytest.mark.slow


def repro_run_id(project: Path) -> str:
    """The run the module's `dvc repro` made (what reports/mlflow_run.json names), whatever ran since."""
    return json.loads((project / "reports/mlflow_run.json").read_text())["run_id"]


def mlflow_runs(project: Path):
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist-convnet")
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.fixture(scope="module")
def repro(tmp_path_factory, tiny):
    """A project copy on which `dvc repro` ran once with MNIST_MIRROR at a tiny generated mirror."""

    base = tmp_path_factory.mktemp("dvc")
    project = copy_project(base / "project")
    tiny.shrink(project, {"mlflow.system_metrics_interval_s": 0.1})  # the UI test shows them
    mirror = write_mirror(base / "mirror", tiny.raw)
    env = {"MNIST_MIRROR": str(mirror)}
    result = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    (base / "repro.log").write_text(result.stdout + result.stderr)  # what a user's log of it holds
    return project, env


def test_repro_writes_every_declared_output(repro):
    project, _ = repro
    for path in ("data/raw/train-images-idx3-ubyte", "data/processed/mnist.pt", "data/processed/stats.json",
                 "models/best.ckpt", "models/last.ckpt", "reports/train_metrics.json", "reports/history.csv",
                 "reports/metrics.json", "reports/per_class.csv", "reports/predictions.csv",
                 "reports/confusion_matrix.png", "dvc.lock"):  # fmt: skip
        assert (project / path).is_file(), path
    stats = json.loads((project / "data/processed/stats.json").read_text())
    assert stats["sizes"] == {"train": 500, "val": 100, "test": 200}
    assert stats["class_counts"]["val"] == [10] * 10
    history = list(csv.DictReader((project / "reports/history.csv").open()))
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert len(list(csv.DictReader((project / "reports/predictions.csv").open()))) == 200


def test_the_repro_log_is_lines_not_redraws_and_says_each_thing_once(repro):
    """Output to a log (no terminal): a line per downloaded file and per epoch, each Lightning message
    once, and no carriage-return redraws of progress bars."""
    log = (repro[0].parent / "repro.log").read_text()
    assert "\r" not in log
    assert log.count("checksum verified") == 4  # the four IDX files
    epochs = [line[:10] for line in log.splitlines() if line.startswith("epoch ")]
    assert epochs == ["epoch 1/2:", "epoch 2/2:"], log
    assert log.count("Seed set to") == 1 and log.count("`Trainer.fit` stopped") == 1, log


def test_the_model_learns_the_tiny_task(repro):
    project, _ = repro
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["test/acc"] > 0.5  # chance is 0.1
    assert set(metrics) == {"test/acc", "test/loss"}  # the rest is in the MLflow run
    assert set(json.loads((project / "reports/train_metrics.json").read_text())) == {"val/acc", "fit_seconds"}


def test_a_second_repro_does_nothing_and_status_is_clean(repro):
    project, env = repro
    again = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert again.returncode == 0
    assert "Running stage" not in again.stdout
    status = run_cli(["dvc", "status"], cwd=project, env=env)
    assert "Data and pipelines are up to date." in status.stdout, status.stdout


ALL = {"check_conf", "download", "preprocess", "train", "evaluate"}
CHANGED = {  # a module edited -> the stages `dvc status` shows changed: those that import it
    "digitpipe/atomic.py": ALL,
    "digitpipe/data/preprocess.py": {"preprocess", "train", "evaluate"},
    "digitpipe/config/values.py": {"train"},
    "digitpipe/serving/images.py": {"train"},
    "digitpipe/evaluation/metrics.py": {"evaluate"},
    "digitpipe_search/report.py": set(),  # the extensions: nothing of the main pipeline
    "digitpipe_study/table.py": set(),
}


@pytest.mark.parametrize("module", CHANGED)
def test_a_change_to_a_module_makes_the_stages_that_import_it_stale_and_no_other(built, tmp_path, module):
    project, env = copy_of(built[0], tmp_path / "project"), built[1]
    with (project / "src" / module).open("a") as source:
        source.write("\n# changed\n")
    status = run_cli(["dvc", "status", "--json"], cwd=project, env=env)
    assert set(json.loads(status.stdout)) == CHANGED[module], status.stdout


def test_training_and_evaluation_are_one_mlflow_run_with_params_metrics_and_artifacts(repro):
    project, _ = repro
    client, runs = mlflow_runs(project)
    run = client.get_run(repro_run_id(project))
    assert [r.info.run_id for r in runs if "dvc.exp_name" not in r.data.tags] == [run.info.run_id]  # one run
    assert run.data.params["model.activation"] == "relu"
    assert run.data.params["optimizer._target_"] == "torch.optim.RMSprop"
    assert run.data.params["data.val_size"] == "100"
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "test/acc", "test/loss", "test/macro_f1"):
        assert key in run.data.metrics, key
    steps = client.get_metric_history(run.info.run_id, "train/loss_step")
    assert len(steps) >= 3  # per-step training loss
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2  # per epoch
    assert run.data.tags["mlflow.runName"] == "relu-rmsprop-lr0.001-b32-2ep-s42"
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    lock = (project / "dvc.lock").read_text()
    assert run.data.tags["data.md5"] in lock
    (data,) = run.inputs.dataset_inputs  # the MLflow dataset input: which data the run saw
    assert (data.dataset.name, data.dataset.digest) == ("mnist", run.data.tags["data.md5"])
    assert [(tag.key, tag.value) for tag in data.tags] == [("mlflow.data.context", "training")]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "model_summary.txt", "evaluation"} <= artifacts
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/confusion_matrix.png" in evaluation
    checkpoints = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert checkpoints == {"checkpoints/best.ckpt", "checkpoints/last.ckpt"}
    summary = Path(client.download_artifacts(run.info.run_id, "model_summary.txt")).read_text()
    assert "93.3 K    Total params" in summary and "| [1, 32, 26, 26]" in summary  # Lightning's, with sizes
    assert run.data.tags["device.type"] == "cpu" and run.data.tags["device.count"] == "1"
    assert run.data.params["trainer.precision"] == "auto"  # what was asked; the tag: what ran
    assert run.data.tags["device.precision"] == resolve_precision("auto", "cpu")
    assert run.data.tags["device.cuda_graph"] == "false" and run.data.tags["device.steps_per_batch"] == "1"
    assert run.data.tags["git.dirty"] in ("true", "false") and run.data.tags["process.host"]
    assert run.info.status == "FINISHED" and int(run.data.tags["process.pid"]) > 0
    figures = {a.path.removeprefix("figures/") for a in client.list_artifacts(run.info.run_id, "figures")}
    maps = {f"feature_maps_conv{i}.png" for i in (1, 2, 3)}
    expected = {"confusion_matrix.png", "misclassified.png", "filters_conv1.png", "activation_relu.png"}
    assert figures == expected | maps | {"training_curves.png"}


def out_of_distribution_pngs(images: np.ndarray, folder: Path) -> list[Path]:
    """MNIST digits as people's files are: dark on light, upscaled, off-centre, RGB."""
    folder.mkdir(exist_ok=True)
    paths = []
    for i, digit in enumerate(images.astype(np.uint8)):
        canvas = np.full((120, 100), 255, dtype=np.uint8)
        big = np.kron(255 - digit, np.ones((3, 3), dtype=np.uint8))  # 84x84, inverted
        canvas[5 + i % 30 : 89 + i % 30, 3 + i % 13 : 87 + i % 13] = big
        paths.append(folder / f"digit{i}.png")
        Image.fromarray(canvas).convert("RGB").save(paths[-1])
    return paths


def test_the_model_is_registered_and_predicts_digits_without_project_code(repro, tmp_path):
    import mlflow.pyfunc
    import pandas as pd

    project, env = repro
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client, _ = mlflow_runs(project)
    version = client.get_model_version("mnist-convnet", "1")  # the first training's; evaluate tagged it
    assert version.run_id == repro_run_id(project)
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert version.tags["test/acc"] == str(metrics["test/acc"])
    # @champion: the best test accuracy registered (experiments of other tests may have joined)
    versions = client.search_model_versions("name='mnist-convnet'")
    champion = client.get_model_version_by_alias("mnist-convnet", "champion")
    assert float(champion.tags["test/acc"]) == max(float(v.tags.get("test/acc", "-inf")) for v in versions)
    model = mlflow.pyfunc.load_model("models:/mnist-convnet/1")
    inputs = model.metadata.signature.inputs
    assert inputs.input_names() == ["image", "pixels"] and not any(c.required for c in inputs.inputs)
    data = torch.load(project / "data/processed/mnist.pt", weights_only=True)
    images, labels = data["test_images"][:50].numpy(), data["test_labels"][:50].numpy()
    answers = model.predict(pd.DataFrame({"pixels": [image.tolist() for image in images]}))
    probabilities = np.stack(answers["probabilities"])
    assert probabilities.shape == (50, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert list(answers["digit"]) == list(probabilities.argmax(axis=1))
    assert (answers["digit"].to_numpy() == labels).mean() >= metrics["test/acc"] - 0.1

    # image files: the served model and predict.py frame them with the same code, so they agree
    pngs = out_of_distribution_pngs(images[:20], tmp_path / "pngs")
    served = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in pngs]}))
    printed = run_cli(["python", "src/predict.py", *map(str, pngs)], cwd=project, env=env)
    assert printed.returncode == 0, printed.stderr
    expected = [
        f"{p}: {d} (p={q:.3f})" for p, d, q in zip(pngs, served["digit"], served["probability"], strict=True)
    ]
    assert printed.stdout.splitlines() == expected
    champion = ["--model", "models:/mnist-convnet/1"]
    store = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    by_uri = run_cli(["python", "src/predict.py", *champion, *map(str, pngs)], cwd=project, env=store)
    assert by_uri.returncode == 0 and by_uri.stdout.splitlines() == expected, by_uri.stderr[-2000:]


def test_a_team_shares_data_and_models_through_a_dvc_remote(repro, tmp_path):
    """Push to a remote, lose the cache and every cached output, pull: all back, nothing to rerun."""
    source, env = repro
    project = tmp_path / "project"  # a copy: the module's project stays as the other tests expect it
    shutil.copytree(source, project, symlinks=True)
    storage = tmp_path / "storage"
    added = run_cli(["dvc", "remote", "add", "-d", "storage", str(storage)], cwd=project)
    assert added.returncode == 0, added.stderr
    pushed = run_cli(["dvc", "push"], cwd=project, env=env)
    assert pushed.returncode == 0, pushed.stderr
    model = (project / "models" / "best.ckpt").read_bytes()
    shutil.rmtree(project / ".dvc" / "cache")
    for output in ("data/raw", "models"):
        shutil.rmtree(project / output)
    (project / "data" / "processed" / "mnist.pt").unlink()
    pulled = run_cli(["dvc", "pull"], cwd=project, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert (project / "models" / "best.ckpt").read_bytes() == model
    assert (project / "data" / "raw" / "train-images-idx3-ubyte").is_file()
    in_sync = run_cli(["dvc", "status", "-c"], cwd=project, env=env)
    assert "Cache and remote 'storage' are in sync." in in_sync.stdout, in_sync.stdout
    again = run_cli(["dvc", "repro"], cwd=project, env=env)
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout
    assert "Data and pipelines are up to date." in again.stdout


def test_dvc_metrics_and_plots_show_the_results(repro):
    project, env = repro
    metrics = run_cli(["dvc", "metrics", "show", "--json"], cwd=project, env=env)
    shown = json.dumps(json.loads(metrics.stdout))
    assert "test/acc" in shown and "val/acc" in shown
    plots = run_cli(["dvc", "plots", "show", "--json"], cwd=project, env=env)
    assert plots.returncode == 0, plots.stderr
    charts = json.loads(plots.stdout)["data"]
    # each chart once (no auto-generated twin per stage output), each with its title
    assert set(charts) == {"loss", "accuracy", "learning_rate", "confusion", "per_class"}
    titles = [chart["content"]["title"]["text"] for views in charts.values() for chart in views]
    assert len(titles) == 5 and all(t and "/" not in t for t in titles), titles


def test_dvc_exp_show_fits_a_screen_with_the_knobs_and_the_results(repro):
    """The table a DVC user reads: the results that matter (test/acc, test/loss, val/acc, fit time),
    then the experiment's knobs (activation, optimizer and lr, scheduler, batch size, epochs,
    precision, seed), in at most 40 columns (it was 124) before the hashes of the code files the
    stages depend on (one each: `--drop '^src/'` hides them), and none of the plumbing."""
    project, env = repro
    shown = run_cli(["dvc", "exp", "show", "--csv", "--no-pager"], cwd=project, env=env)
    assert shown.returncode == 0, shown.stderr
    header = next(csv.reader(shown.stdout.splitlines()))
    print(f"{len(header)} columns: {','.join(header)}")
    code = [i for i, column in enumerate(header) if column.startswith("src/")]
    assert code == list(range(len(header) - len(code), len(header))), header  # last
    assert len(header) - len(code) <= 40, (len(header), header)
    assert header[:5] == ["Experiment", "rev", "typ", "Created", "parent"]
    results = ["val/acc", "fit_seconds", "test/acc", "test/loss"]
    assert set(header[5:9]) == set(results)
    knobs = ["model.activation", "optimizer._target_", "optimizer.lr", "seed", "scheduler",
             "data.batch_size", "trainer.max_epochs", "trainer.precision"]  # fmt: skip
    assert all(k in header for k in knobs), [k for k in knobs if k not in header]
    plumbing = ("mlflow.", "paths.", "data.files.", "data.download.", "trainer.accelerator", "callbacks.",
                "search.", "study.", "pipelines/")  # fmt: skip
    assert not [c for c in header if c.startswith(plumbing)]


def test_exp_run_set_changes_what_trains_even_to_ddp_and_logs_to_the_project_store(repro):
    """`dvc exp run --temp -S`: a copy of the workspace under .dvc/tmp trains what -S says (here
    another activation, on two DDP processes) and logs one run, evaluated, to the project's store."""
    project, env = repro
    overrides = ["-S", "model.activation=sigmoid", "-S", "+trainer=ddp_cpu"]  # + : not a knob
    result = run_cli(["dvc", "exp", "run", "--temp", *overrides], cwd=project, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    _, runs = mlflow_runs(project)  # the temp copy under .dvc/tmp logged here, to the project root
    (sigmoid,) = [r for r in runs if r.data.params["model.activation"] == "sigmoid"]  # one, not one per rank
    assert sigmoid.data.params["trainer.devices"] == "2" and "dvc.exp_name" in sigmoid.data.tags
    assert "test/acc" in sigmoid.data.metrics  # evaluate found the temp run's training run
    shown = run_cli(["dvc", "exp", "show", "--json"], cwd=project, env=env)
    assert '"sigmoid"' in shown.stdout
    assert not list((project / ".dvc" / "tmp").rglob("mlflow.db"))
    # the experiment goes, so the table the other tests read is the baseline's (in any order)
    removed = run_cli(["dvc", "exp", "remove", "--all-commits"], cwd=project, env=env)
    assert removed.returncode == 0, removed.stderr


def test_a_hydra_sweep_makes_one_run_per_job(repro, tmp_path):
    project, env = repro
    overrides = ["mlflow.experiment_name=sweep", "trainer.max_epochs=1"]
    # the sweep's training outputs go elsewhere: the module's workspace stays as `dvc repro` left it
    outputs = {"model_dir": "models", "checkpoints": "checkpoints", "run_info": "mlflow_run.json",
               "train_metrics": "train_metrics.json", "history": "history.csv"}  # fmt: skip
    overrides += [f"paths.{key}={tmp_path / name}" for key, name in outputs.items()]
    result = run_cli(["python", "src/train.py", "-m", "model.activation=relu,tanh", "optimizer=rmsprop,adam",
                      *overrides], cwd=project, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sweep")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.data.tags["mlflow.runName"].startswith("sweep: model.activation=relu,tanh")
    names = sorted(r.data.tags["mlflow.runName"] for r in children)
    assert names == [f"{a}-{o}-lr0.001-b32-1ep-s42" for a in ("relu", "tanh") for o in ("adam", "rmsprop")]
    assert all(r.info.status == "FINISHED" for r in runs)
    # comparable: every child has the same metric names, whatever its optimizer (README's query)
    assert len({frozenset(r.data.metrics) for r in children}) == 1
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    found = mlflow.search_runs(
        experiment_names=["sweep"],
        filter_string="params.`model.activation` = 'tanh'",
        order_by=["metrics.`val/acc` DESC"],
    )
    assert sorted(found["tags.mlflow.runName"]) == [n for n in names if n.startswith("tanh")]
    assert list(found["metrics.val/acc"]) == sorted(found["metrics.val/acc"], reverse=True)
    assert list(found["metrics.train/lr"]) == pytest.approx([1e-3, 1e-3])
    assert (tmp_path / "models" / "best.ckpt").exists()
    status = run_cli(["dvc", "status", "--json"], cwd=project, env=env)
    assert json.loads(status.stdout) == {}  # the workspace's outputs untouched


# The MLflow UI in headless Chromium, on this module's project (the UI needs runs to show)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# as root, offline: no sandbox, and none of Chromium's background calls home
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_dvc_plots_show_renders_every_chart_with_no_network(repro):
    from playwright.sync_api import sync_playwright

    project, env = repro
    shown = run_cli(["dvc", "plots", "show"], cwd=project, env=env)
    assert shown.returncode == 0, shown.stderr
    page_file = project / "dvc_plots" / "index.html"
    assert "cdn." not in page_file.read_text()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        remote = []  # any request off the disk is refused and recorded: the page must not need one
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (remote.append(route.request.url), route.abort()))  # fmt: skip
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(page_file.as_uri())
        drawn = ".vega-embed svg.marks, .vega-embed canvas"
        page.wait_for_function(f"document.querySelectorAll('{drawn}').length >= 5", timeout=30_000)
        browser.close()
    assert not remote and not errors, (remote, errors)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_the_ui_shows_the_run_its_metrics_and_its_figures(repro, tmp_path):
    from playwright.sync_api import sync_playwright

    project, _ = repro
    client, _ = mlflow_runs(project)
    run = client.get_run(repro_run_id(project))
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "ui", "--host", "127.0.0.1", "--port", str(port)]
    # started in the project root with no store argument: it must find the runs by MLflow's default
    ui = start(command, f"http://127.0.0.1:{port}/health", project)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            # README's link: the experiment's runs table (MLflow 3.17 opens its GenAI pages otherwise)
            experiment = f"http://127.0.0.1:{port}/#/experiments/{run.info.experiment_id}"
            page.goto(f"{experiment}?workflowType=machine_learning")
            page.get_by_text("relu-rmsprop-lr0.001-b32-2ep-s42").first.wait_for(timeout=60_000)
            assert "/runs" in page.url
            page.screenshot(path=str(tmp_path / "experiment.png"))
            page.goto(
                f"http://127.0.0.1:{port}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
            )
            page.get_by_text("relu-rmsprop-lr0.001-b32-2ep-s42").first.wait_for(timeout=60_000)
            page.get_by_text("test/acc").first.wait_for(timeout=30_000)
            body = page.inner_text("body")
            assert f"test/loss\n{run.data.metrics['test/loss']}" in body  # the value evaluate logged
            page.screenshot(path=str(tmp_path / "run.png"))
            page.get_by_role("tab", name="Artifacts").click()
            page.get_by_text("figures", exact=True).first.click()
            page.get_by_text("training_curves.png").first.click()
            page.get_by_text("figures/training_curves.png").first.wait_for(timeout=30_000)
            page.wait_for_function(
                "() => [...document.images].some(i => i.src.startsWith('blob:') && i.naturalWidth > 600)",
                timeout=30_000,
            )
            page.screenshot(path=str(tmp_path / "figure.png"))
            page.get_by_role("tab", name="System metrics").click()
            page.get_by_text("cpu_utilization_percentage").first.wait_for(timeout=30_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)  # a chart drawn, not a spinner
            page.screenshot(path=str(tmp_path / "system.png"))
            browser.close()
    finally:
        stop(ui)
    assert (tmp_path / "run.png").stat().st_size > 10_000 and (
        tmp_path / "figure.png"
    ).stat().st_size > 10_000
