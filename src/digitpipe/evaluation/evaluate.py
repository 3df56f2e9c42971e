"""The evaluate stage: test the trained model, write DVC metrics/plots, log into the training's run."""

from __future__ import annotations

import csv
import time

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from mlflow.entities import Metric
from omegaconf import DictConfig

from digitpipe import atomic
from digitpipe.data.datamodule import DigitsDataModule, scale_images
from digitpipe.data.source import dataset_source
from digitpipe.errors import TrackingError
from digitpipe.evaluation.metrics import Evaluation, evaluate_logits, predict_logits
from digitpipe.evaluation.model_figures import activation_figure, feature_map_figures, filters_figure
from digitpipe.evaluation.plots import confusion_figure, curves_figure, misclassified_figure
from digitpipe.metric_names import TEST_ACC
from digitpipe.models.checkpoint import load_classifier
from digitpipe.models.classifier import DigitClassifier
from digitpipe.paths import resolve
from digitpipe.tracking.registry import promote_if_better
from digitpipe.tracking.run import close_dead_runs
from digitpipe.tracking.store import Store, open_store, store_failures
from digitpipe.train_outputs import BEST, training_run_id


def run_evaluate(cfg: DictConfig) -> Evaluation:
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
    write_reports(cfg, result, logits.argmax(dim=1), test.labels)
    figures = build_figures(cfg, model, result, images, test.images, test.labels, logits.softmax(dim=1))
    log_to_run(store, run_id, cfg, result, figures)
    if name := cfg.mlflow.registered_model_name:  # evaluate decides: the test metrics exist now
        with store_failures(store.uri, "updating the model registry"):
            verdict = promote_if_better(store.client, name, run_id, result.scalars[TEST_ACC])
        if verdict:
            print(verdict, flush=True)
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


def write_reports(cfg: DictConfig, result: Evaluation, preds: torch.Tensor, labels: torch.Tensor) -> None:
    paths = cfg.paths
    atomic.write_json(resolve(paths.metrics), {k: round(v, 6) for k, v in result.scalars.items()})
    atomic.write_text(resolve(paths.per_class), atomic.csv_text(result.per_class, list(result.per_class[0])))
    pairs = [{"actual": int(a), "predicted": int(p)} for a, p in zip(labels, preds, strict=True)]
    atomic.write_text(resolve(paths.predictions), atomic.csv_text(pairs, ("actual", "predicted")))
    figure = confusion_figure(result.confusion)
    atomic.write_with(resolve(paths.confusion_png), lambda tmp: figure.savefig(tmp, format="png"))


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


def log_to_run(
    store: Store, run_id: str, cfg: DictConfig, result: Evaluation, figures: dict[str, Figure]
) -> None:
    """Metrics, reports and figures into the training's run, without touching its status."""
    client = store.client
    with store_failures(store.uri, "logging the evaluation"):
        client.log_batch(
            run_id, metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in result.scalars.items()]
        )
        for path in (cfg.paths.metrics, cfg.paths.per_class, cfg.paths.confusion_png):
            client.log_artifact(run_id, str(resolve(path)), "evaluation")
        for name, figure in figures.items():
            client.log_figure(run_id, figure, f"figures/{name}")
            plt.close(figure)
