"""The train stage's function in-process on tiny data: reproducible, and its outputs are complete."""

from __future__ import annotations

import ast
import csv
import json
import os
import threading
import warnings

import pytest
import torch
from mlflow import MlflowClient

from digitpipe.data.datamodule import scale_images
from digitpipe.data.download import MIRROR_ENV
from digitpipe.environment import CPU_BF16 as CPU_BF16_ENV
from digitpipe.models.checkpoint import load_classifier
from digitpipe.serving.network import pixel_classifier_from_checkpoint
from digitpipe.training.train import train

from ..conftest import ROOT, compose_config, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_cfg(tmp_path, tiny_mirror, tiny, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths resolve here (no dvc.yaml above tmp_path)
    monkeypatch.setenv(MIRROR_ENV, str(tiny_mirror))
    overrides = tiny.overrides() + [
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "callbacks.progress_bar.refresh_rate=0",
        "mlflow.log_model=false",  # the logged model is tested in test_dvc_pipeline and test_mlflow_server
    ]
    return lambda *extra: compose_config([*overrides, *extra])


def test_the_same_seed_trains_the_same_model_twice(tiny_cfg, tmp_path):
    first = train(tiny_cfg())
    weights = torch.load(tmp_path / "models" / "last.ckpt", weights_only=True)["state_dict"]
    second = train(tiny_cfg())
    again = torch.load(tmp_path / "models" / "last.ckpt", weights_only=True)["state_dict"]
    # two trainings, two finished runs (a finished training is never resumed into), one model
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist-convnet")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    expected = [(first.run_id, "FINISHED"), (second.run_id, "FINISHED")]  # two runs, each finished
    assert [(r.info.run_id, r.info.status) for r in runs] == expected
    assert not second.resumed and "resumed" not in runs[1].data.tags
    assert {k: v for k, v in first.metrics.items() if k != "fit_seconds"} == {
        k: v for k, v in second.metrics.items() if k != "fit_seconds"
    }
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def process_state() -> dict:
    import signal
    import sys

    import mlflow

    from digitpipe.environment import torch_flags

    return {
        "environ": dict(os.environ), "argv": list(sys.argv), "torch": torch_flags(),
        "handlers": [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)],
        "threads": sorted(t.name for t in threading.enumerate()),
        "fluent mlflow": (mlflow.is_tracking_uri_set(), mlflow.active_run()),
    }  # fmt: skip


def test_a_training_leaves_the_process_as_it_found_it(tiny_cfg):
    """The search calls train() once per trial, in one process. (tqdm starts one monitor thread per
    process for all its bars, Lightning's and MLflow's: it may stay, once.)"""

    def without_tqdm(state: dict) -> dict:
        return {**state, "threads": [t for t in state["threads"] if t != "tqdm_monitor"]}

    before = process_state()
    train(tiny_cfg("mlflow.log_model=true"))  # the model is logged through the client, too
    after = process_state()
    assert without_tqdm(after) == without_tqdm(before)
    train(tiny_cfg("mlflow.log_model=true", "seed=1"))
    assert process_state() == after  # and nothing piles up


def test_another_seed_trains_a_different_model(tiny_cfg):
    assert train(tiny_cfg("seed=1")).metrics["train/loss"] != train(tiny_cfg("seed=2")).metrics["train/loss"]


def test_train_prepares_missing_data_then_writes_every_output(tiny_cfg, tmp_path):
    result = train(tiny_cfg("model.activation=leaky_relu", "scheduler=cosine"))
    assert (tmp_path / "data" / "processed" / "mnist.pt").is_file()  # prepared by the stages' code
    metrics = json.loads((tmp_path / "reports" / "train_metrics.json").read_text())
    assert set(metrics) == {"val/acc", "fit_seconds"}  # the DVC metrics; every metric is in the result
    assert {"train/loss", "train/acc", "train/lr", "val/loss", "best/val_acc"} <= set(result.metrics)
    assert metrics["val/acc"] == pytest.approx(result.metrics["val/acc"], abs=1e-6)
    run_info = json.loads((tmp_path / "reports" / "mlflow_run.json").read_text())
    assert run_info["run_id"] == result.run_id
    checkpoint = torch.load(tmp_path / "models" / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["activation"] == "leaky_relu"
    history = list(csv.DictReader((tmp_path / "reports" / "history.csv").open()))
    assert [row["epoch"] for row in history] == ["1", "2"]
    # the rate each epoch trained with: RMSprop's 1e-3, then cosine-annealed (over 2 epochs: to 5e-4)
    assert [float(row["train/lr"]) for row in history] == pytest.approx([1e-3, 5e-4])


def test_system_metrics_are_sampled_into_the_run_only_when_asked(tiny_cfg, tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    sampled = train(tiny_cfg("mlflow.system_metrics_interval_s=0.05", "trainer.max_epochs=3"))
    keys = client.get_run(sampled.run_id).data.metrics
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        history = client.get_metric_history(sampled.run_id, key)
        assert len(history) >= 2, key  # several samples over the fit, logged at steps 0, 1, ...
        assert [m.step for m in history] == list(range(len(history)))
    assert 0 <= keys["system/cpu_utilization_percentage"] <= 100 * 64
    assert keys["system/system_memory_usage_megabytes"] > 0
    assert not [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor"]  # stopped at fit end

    plain = train(tiny_cfg())
    assert not [k for k in client.get_run(plain.run_id).data.metrics if k.startswith("system/")]


@pytest.mark.parametrize(("cpu_bf16", "expected"), [("1", "bf16-mixed"), ("0", "32-true")])
def test_auto_precision_trains_in_what_the_cpu_has_and_the_run_says_which(
    tiny_cfg, tmp_path, monkeypatch, cpu_bf16, expected
):
    """`auto` on either kind of CPU: bf16 autocast trains the tiny task as well as fp32 does, its
    checkpoint keeps fp32 weights (autocast casts per op), and the run's tag names what ran."""
    monkeypatch.setenv(CPU_BF16_ENV, cpu_bf16)
    result = train(tiny_cfg())
    tags = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(result.run_id).data.tags
    assert tags["device.precision"] == expected
    assert result.metrics["val/acc"] > 0.9  # the tiny task is learnt in two epochs either way
    weights = torch.load(tmp_path / "models" / "best.ckpt", weights_only=True)["state_dict"]
    assert {v.dtype for k, v in weights.items() if v.is_floating_point()} == {torch.float32}


def test_standardisation_statistics_travel_in_the_checkpoint(tiny_cfg, tmp_path):
    train(tiny_cfg("data.normalize=true"))
    checkpoint = tmp_path / "models" / "best.ckpt"
    saved = torch.load(checkpoint, weights_only=True)
    data = torch.load(tmp_path / "data" / "processed" / "mnist.pt")
    train_images = scale_images(data["train_images"])
    assert saved["hyper_parameters"]["standardize"] is True
    assert saved["state_dict"]["standardize.mean"].item() == pytest.approx(train_images.mean().item())
    assert saved["state_dict"]["standardize.std"].item() == pytest.approx(train_images.std().item())

    # the deployable model applies the same statistics to raw pixels as the classifier did in training
    classifier = load_classifier(checkpoint).eval()
    pixels = data["test_images"][:8]
    with torch.no_grad():
        expected = classifier(scale_images(pixels)).softmax(dim=1)
        restored = pixel_classifier_from_checkpoint(checkpoint)
        assert torch.allclose(restored(pixels.float()), expected, atol=1e-6)
        assert not torch.allclose(classifier.net(scale_images(pixels)).softmax(dim=1), expected, atol=1e-3)


def test_diagnostics_on_measure_every_layer_into_the_run_history_and_files_and_off_adds_nothing(
    tiny_cfg, tmp_path
):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    reports = tmp_path / "reports"
    steps_per_epoch = -(-500 // 32)  # 600 training images less val_size=100, batch 32
    diagnostics = ["detail_steps=10", "every_n_steps=4", "probe_size=50"]
    on = train(
        tiny_cfg(
            "diagnostics=on", "model.activation=tanh", *(f"callbacks.diagnostics.{d}" for d in diagnostics)
        )
    )
    layers = ["conv1", "conv2", "conv3", "dense1"]
    records = list(csv.DictReader((reports / "diagnostics.csv").open()))
    grad_steps = sorted({int(r["step"]) for r in records if r["metric"] == "grad_norm"})
    expected = [s for s in range(1, 2 * steps_per_epoch + 1) if s <= 10 or s % 4 == 0]
    assert grad_steps == expected
    assert {r["layer"] for r in records if r["metric"] == "grad_norm"} == {*layers, "dense2"}
    for metric in ("dead", "saturated"):  # tanh saturates: both, at initialisation and after each epoch
        assert sorted({(int(r["epoch"]), r["layer"]) for r in records if r["metric"] == metric}) == sorted(
            (e, layer) for e in (0, 1, 2) for layer in layers
        )
    history = list(csv.DictReader((reports / "history.csv").open()))
    assert {f"diag/dead/{layer}" for layer in layers} | {"diag/step_ms"} <= set(history[0])
    assert all(0.0 <= float(row["diag/saturated/conv1"]) <= 1.0 for row in history)
    run = client.get_run(on.run_id)
    assert {f"diag/grad_norm/{layer}" for layer in [*layers, "dense2"]} <= set(run.data.metrics)
    logged = client.get_metric_history(on.run_id, "diag/grad_norm/conv1")
    assert sorted(m.step for m in logged) == expected  # every measured step, once
    assert [m.step for m in client.get_metric_history(on.run_id, "diag/dead/conv1")][0] == 0  # at init
    artifacts = {a.path for a in client.list_artifacts(on.run_id, "diagnostics")}
    assert artifacts == {"diagnostics/diagnostics.csv", "diagnostics/diagnostics.png"}

    off = train(tiny_cfg("model.activation=tanh"))
    assert not any(key.startswith("diag/") for key in client.get_run(off.run_id).data.metrics)
    assert not any(key.startswith("diag/") for key in next(csv.DictReader((reports / "history.csv").open())))
    assert not (reports / "diagnostics.csv").exists() and not (reports / "diagnostics.png").exists()


def metric_histories(tracking_uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient(tracking_uri)
    keys = [k for k in client.get_run(run_id).data.metrics if not k.startswith("system/")]
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}


def test_several_steps_per_lightning_batch_train_and_record_what_one_per_batch_does(tiny_cfg, tmp_path):
    """train_step.steps_per_batch=6: the module runs 6 optimizer steps per Lightning batch (the
    GPU's CUDA-graph path does 50); weights, step count and every MLflow metric at every step are
    those of the one-step-per-batch run (16 batches per epoch, so groups of 6, 6, 4). Lightning's
    warning that 3 batches are fewer than log_every_n_steps (5) is not shown: the steps are logged."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    one = train(tiny_cfg())
    weights = torch.load(tmp_path / "models" / "last.ckpt", weights_only=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grouped = train(tiny_cfg("train_step.steps_per_batch=6"))
    assert not [w for w in caught if "smaller than the logging interval" in str(w.message)]
    again = torch.load(tmp_path / "models" / "last.ckpt", weights_only=True)
    assert again["global_step"] == weights["global_step"] == 2 * 16
    assert all(torch.equal(weights["state_dict"][k], again["state_dict"][k]) for k in weights["state_dict"])
    expected, got = metric_histories(uri, one.run_id), metric_histories(uri, grouped.run_id)
    assert set(got) == set(expected) and "train/loss_step" in got
    assert [s for s, _ in expected["train/loss_step"]] == [4, 9, 14, 19, 24, 29]  # every 5th step
    for key, points in expected.items():
        assert [s for s, _ in got[key]] == [s for s, _ in points], key
        # the epoch's mean loss is summed in another order (a vector of 3 at once): float rounding
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in points], rel=1e-6), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_graphed_training_records_what_the_eager_one_does(tiny_cfg, tmp_path):
    """trainer=gpu graphs the steps (train_step auto) 50 per Lightning batch; its run has the same
    step count and the same metrics at the same steps as Lightning's own eager steps, up to the
    GPU's float differences (cuDNN may pick other algorithms: deterministic is off on GPUs)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    eager = train(tiny_cfg("trainer=gpu", "train_step.cuda_graph=false"))
    eager_steps = torch.load(tmp_path / "models" / "last.ckpt", weights_only=True)["global_step"]
    graphed = train(tiny_cfg("trainer=gpu"))
    assert (
        torch.load(tmp_path / "models" / "last.ckpt", weights_only=True)["global_step"] == eager_steps == 32
    )
    tags = MlflowClient(uri).get_run(graphed.run_id).data.tags
    assert (tags["device.cuda_graph"], tags["device.steps_per_batch"], tags["device.type"]) == (
        "true",
        "50",
        "cuda",
    )
    expected, got = metric_histories(uri, eager.run_id), metric_histories(uri, graphed.run_id)
    assert set(got) == set(expected)
    for key, points in expected.items():
        assert [s for s, _ in got[key]] == [s for s, _ in points], key
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in points], rel=0.02, abs=0.02), key


def test_a_training_in_one_cpu_process_loads_neither_the_ddp_nor_the_graphed_step_code(
    tiny, tiny_mirror, tmp_path
):
    """In a fresh process, as `python src/train.py` runs (the workers here import everything)."""
    script = (
        "import sys; from hydra import compose, initialize_config_dir; "
        "from digitpipe.cli import VERSION_BASE; from digitpipe.training.train import train\n"
        f"with initialize_config_dir({str(ROOT / 'conf')!r}, version_base=VERSION_BASE):\n"
        f"    cfg = compose('config', overrides={[*tiny.overrides(), 'trainer.max_epochs=1']!r})\n"
        "train(cfg)\n"
        "print(sorted(m for m in sys.modules if m.startswith('digitpipe')))"
    )
    env = {"MNIST_MIRROR": str(tiny_mirror)}
    done = run_cli(["python", "-c", script], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert "digitpipe.training.train" in loaded and "digitpipe.models.classifier" in loaded
    assert [m for m in loaded if m.startswith(("digitpipe.steps", "digitpipe.distributed"))] == []
