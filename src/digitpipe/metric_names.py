"""Every metric's name, once: MLflow, DVC's metrics files, the history CSV and the console share them
(one name per quantity for every optimizer and run, so runs compare)."""

TRAIN, VAL, TEST = "train", "val", "test"
SPLITS = (TRAIN, VAL, TEST)


def metric(split: str, name: str) -> str:
    """e.g. metric("val", "acc") == "val/acc"."""
    return f"{split}/{name}"


TRAIN_LOSS, TRAIN_ACC = metric(TRAIN, "loss"), metric(TRAIN, "acc")
VAL_LOSS, VAL_ACC = metric(VAL, "loss"), metric(VAL, "acc")
TRAIN_LOSS_STEP = metric(TRAIN, "loss_step")  # every log_every_n_steps steps
LR = metric(TRAIN, "lr")  # the rate an epoch trained with (Lightning's own name depends on the optimizer)
TEST_ACC, TEST_LOSS = metric(TEST, "acc"), metric(TEST, "loss")
TEST_MACRO_F1, TEST_ERRORS = metric(TEST, "macro_f1"), metric(TEST, "errors")

# What the DVC metrics files hold (reports/train_metrics.json, reports/metrics.json): the results an
# experiment is judged by, so `dvc exp show` fits a screen. Every other metric is in the MLflow run.
TRAIN_REPORT = (VAL_ACC, "fit_seconds")
TEST_REPORT = (TEST_ACC, TEST_LOSS)
