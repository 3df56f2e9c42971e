"""The evaluate stage: test the trained model, write DVC metrics/plots, log into the training's run."""

from __future__ import annotations

import csv
import io
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from mlflow.entities import Metric
from omegaconf import DictConfig

from digitpipe import atomic, interrupts
from digitpipe.data.datamodule import DigitsDataModule, scale_images
from digitpipe.data.source import dataset_source
from digitpipe.errors import TrackingError
from digitpipe.evaluation.metrics import Evaluation, evaluate_logits, predict_logits
from digitpipe.evaluation.model_figures import activation_figure, feature_map_figures, filters_figure
from digitpipe.evaluation.plots import confusion_figure, curves_figure, misclassified_figure
from digitpipe.metric_names import TEST_ACC, TEST_REPORT
from digitpipe.models.checkpoint import load_classifier
from digitpipe.models.classifier import DigitClassifier
from digitpipe.paths import resolve
from digitpipe.tracking.registry import promote_if_better
from digitpipe.tracking.run import close_dead_runs
from digitpipe.tracking.store import Store, open_store, store_failures
from digitpipe.train_outputs import BEST, training_run_id


def run_evaluate(cfg: DictConfig) -> Evaluation:
    """Test the model, then publish as one set: figures into the run, then (with SIGINT/SIGTERM held
    back) its test metrics, the registry's verdict and the reports/ files. Interrupted before that,
    nothing says the model was tested: reports/ is as it was and the run has no test metrics."""
    with interrupts.handled():
        try:
            return evaluate_and_publish(cfg)
        except interrupts.Interrupted as stop:
            stop.detail = (
                "nothing of this evaluation was published (reports/ as it was, no test metrics in the "
                "run); run it again"
            )
            raise


def evaluate_and_publish(cfg: DictConfig) -> Evaluation:
    checkpoint = resolve(cfg.paths.model_dir) / BEST
    model = load_classifier(checkpoint)
    run_id = training_run_id(resolve(cfg.paths.run_info), checkpoint)  # what the train stage published
    store = open_store(cfg.mlflow)  # before any work: an unreachable store writes nothing
    check_run_exists(store, run_id)
    d = cfg.data
    datamodule = DigitsDataModule(dataset_source(cfg), d.batch_size, d.eval_batch_size, cfg.seed)
    datamodule.setup("test")
    test = datamodule.splits["test"]
    images = scale_images(test.images)
    logits = predict_logits(model, images, d.eval_batch_size)
    result = evaluate_logits(logits, test.labels, d.num_classes)
    reports = report_files(cfg, result, logits.argmax(dim=1), test.labels)
    figures = build_figures(cfg, model, result, images, test.images, test.labels, logits.softmax(dim=1))
    with atomic.staged(reports) as commit:
        logged = (cfg.paths.metrics, cfg.paths.per_class, cfg.paths.confusion_png)  # (not predictions.csv)
        log_figures(store, run_id, figures, {resolve(p): reports[resolve(p)] for p in logged})
        with interrupts.deferred():  # the set: the run's test metrics, the registry, reports/
            log_metrics(store, run_id, result)
            if name := cfg.mlflow.registered_model_name:  # evaluate decides: the test metrics exist now
                with store_failures(store.uri, "updating the model registry"):
                    verdict = promote_if_better(store.client, name, run_id, result.scalars[TEST_ACC])
                if verdict:
                    print(verdict, flush=True)
            commit()
    return result


def build_figures(
    cfg: DictConfig, model: DigitClassifier, result: Evaluation, images: torch.Tensor, pixels: torch.Tensor,
    labels: torch.Tensor, probabilities: torch.Tensor,
) -> dict[str, Figure]:  # fmt: skip
    """Every figure the MLflow run shows, by file name (images: scaled to [0, 1]; pixels: raw)."""
    figures = {
        "confusion_matrix.png": confusion_figure(result.confusion),
        "misclassified.png": misclassified_figure(pixels, labels, probabilities),
        "filters_conv1.png": filters_figure(model.net.conv1),
        f"activation_{cfg.model.activation}.png": activation_figure(
            cfg.model.activation, cfg.model.negative_slope
        ),
    }
    for layer, figure in feature_map_figures(model.net, model.standardize(images[0])).items():
        figures[f"feature_maps_{layer}.png"] = figure
    history = resolve(cfg.paths.history)
    if history.is_file():
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(history.open())]
        figures["training_curves.png"] = curves_figure(rows)
    return figures


def report_files(cfg: DictConfig, result: Evaluation, preds: torch.Tensor, labels: torch.Tensor) -> dict:
    """The evaluate stage's DVC outputs, by path: their bytes (written together, at the end)."""
    paths = cfg.paths
    pairs = [{"actual": int(a), "predicted": int(p)} for a, p in zip(labels, preds, strict=True)]
    confusion = io.BytesIO()
    figure = confusion_figure(result.confusion)
    figure.savefig(confusion, format="png")
    plt.close(figure)
    texts = {
        paths.metrics: atomic.json_text({k: round(result.scalars[k], 6) for k in TEST_REPORT}),
        paths.per_class: atomic.csv_text(result.per_class, list(result.per_class[0])),
        paths.predictions: atomic.csv_text(pairs, ("actual", "predicted")),
    }
    return {
        **{resolve(p): text.encode() for p, text in texts.items()},
        resolve(paths.confusion_png): confusion.getvalue(),
    }


def check_run_exists(store: Store, run_id: str) -> None:
    from mlflow.exceptions import MlflowException

    with store_failures(store.uri, "looking up the training's run"):
        close_dead_runs(store.client)
        try:
            store.client.get_run(run_id)
        except MlflowException as err:
            raise TrackingError(
                f"the training's run {run_id} is not in the MLflow store {store.uri}; evaluate logs into "
                "the training's run: use the store it was trained with (mlflow.tracking_uri or "
                "MLFLOW_TRACKING_URI), or rerun the train stage"
            ) from err


def log_figures(store: Store, run_id: str, figures: dict[str, Figure], reports: dict[Path, bytes]) -> None:
    """The figures and the report files into the training's run (evaluation/), not its status."""
    client = store.client
    with store_failures(store.uri, "logging the evaluation"), tempfile.TemporaryDirectory() as tmp:
        for name, figure in figures.items():
            client.log_figure(run_id, figure, f"figures/{name}")
            plt.close(figure)
        for path, data in reports.items():
            (Path(tmp) / path.name).write_bytes(data)
        client.log_artifacts(run_id, tmp, "evaluation")


def log_metrics(store: Store, run_id: str, result: Evaluation) -> None:
    now = int(time.time() * 1000)
    with store_failures(store.uri, "logging the evaluation"):
        store.client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in result.scalars.items()])
