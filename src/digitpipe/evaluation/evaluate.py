"""The evaluate stage: test the trained model, write DVC metrics/plots, log into the training's run."""

from __future__ import annotations

import csv
import json
import warnings

import matplotlib.pyplot as plt
import mlflow
import torch
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig

from digitpipe import io as atomic
from digitpipe import tracking
from digitpipe.data.datamodule import DigitsDataModule, scale_images
from digitpipe.evaluation.metrics import Evaluation, evaluate_logits, predict_logits
from digitpipe.evaluation.model_figures import activation_figure, feature_map_figures, filters_figure
from digitpipe.evaluation.plots import confusion_figure, curves_figure, misclassified_figure
from digitpipe.models.classifier import DigitClassifier, load_classifier
from digitpipe.paths import resolve

BEST_CHECKPOINT = "best.ckpt"


def run_evaluate(cfg: DictConfig) -> Evaluation:
    model = load_classifier(resolve(cfg.paths.model_dir) / BEST_CHECKPOINT)
    d = cfg.data
    datamodule = DigitsDataModule(resolve(cfg.paths.dataset), d.batch_size, d.eval_batch_size)
    datamodule.setup("test")
    test = datamodule.splits["test"]
    images = scale_images(test.images)
    logits = predict_logits(model, images, d.eval_batch_size)
    result = evaluate_logits(logits, test.labels, d.num_classes)
    write_reports(cfg, result, logits.argmax(dim=1), test.labels)
    figures = build_figures(cfg, model, result, images, test.images, test.labels, logits.softmax(dim=1))
    log_to_training_run(cfg, result, figures)
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


def log_to_training_run(cfg: DictConfig, result: Evaluation, figures: dict[str, Figure]) -> None:
    """Log into the run the train stage recorded; start a new run only if that one is gone."""
    uri = tracking.tracking_uri(cfg.mlflow.tracking_uri)
    tracking.check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    run_id = json.loads(resolve(cfg.paths.run_info).read_text())["run_id"]
    try:
        mlflow.get_run(run_id)
    except MlflowException:
        warnings.warn(
            f"MLflow run {run_id} not found at {uri}; logging evaluation to a new run", stacklevel=1
        )
        mlflow.set_experiment(cfg.mlflow.experiment_name)
        run_id = mlflow.start_run(run_name=f"{tracking.run_name(cfg)}-eval").info.run_id
        mlflow.end_run()
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(result.scalars)
        for path in (cfg.paths.metrics, cfg.paths.per_class, cfg.paths.confusion_png):
            mlflow.log_artifact(str(resolve(path)), artifact_path="evaluation")
        for name, figure in figures.items():
            mlflow.log_figure(figure, f"figures/{name}")
            plt.close(figure)
