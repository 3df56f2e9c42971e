"""What a finished study reports: reports/search.json (best params, best val/acc, trial counts, wall
time), the best trial's overrides for the winner's training, and Optuna's own figures (matplotlib)."""

from __future__ import annotations

import io
import warnings
from typing import Any

from digitpipe_search.space import overrides
from digitpipe_search.study import counts, redacted, storage_url

FIGURES = ("optimization_history", "param_importances", "slice", "parallel_coordinate")


def summary(study, search, fixed: list[str], groups: frozenset[str] = frozenset()) -> dict[str, Any]:
    tally = counts(study)
    trials = study.get_trials(deepcopy=False)
    started = [t.datetime_start for t in trials if t.datetime_start]
    ended = [t.datetime_complete for t in trials if t.datetime_complete]
    surplus = sum(1 for t in trials if t.user_attrs.get("surplus"))
    best = best_trial(study)
    return {
        "study": study.study_name,
        "storage": redacted(storage_url(search.storage)),
        "space": study.user_attrs.get("space"),
        "fixed_overrides": fixed,
        "n_trials": int(search.n_trials),
        "trials": {
            "complete": tally["COMPLETE"],
            "pruned": tally["PRUNED"],
            "failed": tally["FAIL"] - surplus,
            "surplus": surplus,
        },
        "best": None
        if best is None
        else {
            "trial": best.number,
            "val_acc": best.value,
            "params": best.params,
            "overrides": [*fixed, *overrides(best.params, groups)],
            "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
            "torch_threads": best.user_attrs.get("torch_threads"),
        },
        # the study's span, first trial start to last trial end (over every worker and rerun)
        "wall_s": round((max(ended) - min(started)).total_seconds(), 1) if started and ended else 0.0,
    }


def best_trial(study):
    """The complete trial with the best val/acc, the first of equals (Optuna's study.best_trial leaves
    ties to the database's row order, and val/acc ties often); None if none."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def figures(study) -> dict[str, bytes]:
    """Optuna's matplotlib figures, as PNG bytes; a figure the study cannot draw yet is left out
    (importances need two complete trials, a slice needs parameters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    drawn = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        for name in FIGURES:
            try:
                axes = getattr(vis, f"plot_{name}")(study)
            except Exception:  # too few trials for this figure
                continue
            figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
            figure.set_size_inches(max(8.0, figure.get_figwidth()), max(5.0, figure.get_figheight()))
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            plt.close(figure)
            drawn[f"{name}.png"] = buffer.getvalue()
    return drawn
