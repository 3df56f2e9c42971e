"""Where the pipeline's training time goes: Lightning's SimpleProfiler on the real CLI, grouped.

    python benchmarks/profile_fit.py                            # 1 epoch of the seed recipe
    python benchmarks/profile_fit.py trainer.precision=32-true  # any overrides

Prints each part's seconds, ms per training step and share of the fit: forward (with loss and
metrics), backward, the optimizer update, data, validation, checkpointing, callbacks (progress
output, guards, history), logging, and what Lightning's loops spend around them. It profiles
Lightning's own steps, one per batch (train_step.cuda_graph=false, steps_per_batch=1): a CUDA
graph runs forward, backward and update as one replay, which this breakdown cannot split.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from train_cli import train_cli

EAGER_STEPS = ["train_step.cuda_graph=false", "train_step.steps_per_batch=1"]
CONTAINERS = ("run_training_epoch", "run_training_batch")  # they hold the actions below
# what Lightning's optimizer_step runs inside it (the closure and its hooks); the rest is the update
IN_OPTIMIZER_STEP = (".training_step", ".backward", ".optimizer_zero_grad", ".configure_gradient_clipping",
                     ".on_before_backward", ".on_after_backward", ".on_before_zero_grad",
                     ".on_before_optimizer_step")  # fmt: skip
PARTS = [  # (part, substrings of SimpleProfiler's action names), first match wins
    ("forward, loss, metrics", ["Strategy.training_step"]),
    ("backward", ["Strategy.backward"]),
    ("validation (5,000 images, and 2,000 in the sanity check)", ["validation", "val_next"]),
    ("data: next batch, to device, scaling", ["dataloader_next", "batch_to_device", "batch_transfer"]),
    ("checkpoints", ["Checkpoint", "checkpoint"]),
    ("data: load and split (setup)", ["prepare_data", "DataModule.setup"]),
    ("callbacks: progress output, guards, run state", ["[Callback]"]),
    ("other hooks (zero_grad, logging, ...)", [""]),
]


def parse_report(text: str) -> dict[str, float]:
    """SimpleProfiler's extended report: action -> total seconds."""
    actions = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 5 and cells[0] not in ("Action", "Total"):
            actions[cells[0]] = float(cells[3])
    return actions


def breakdown(actions: dict[str, float], fit: float) -> dict[str, float]:
    """Seconds per part; the optimizer update is optimizer_step less what runs inside it."""
    parts: dict[str, float] = {}
    for action, seconds in actions.items():
        if action in CONTAINERS or action.endswith(".optimizer_step"):
            continue
        name = action.replace("SingleDeviceStrategy", "Strategy").replace("DDPStrategy", "Strategy")
        part = next(part for part, keys in PARTS if any(key in name for key in keys))
        parts[part] = parts.get(part, 0.0) + seconds
    step = next(seconds for action, seconds in actions.items() if action.endswith(".optimizer_step"))
    inside = sum(s for a, s in actions.items() if a.endswith(IN_OPTIMIZER_STEP))
    parts["optimizer update (RMSprop)"] = step - inside
    parts["Lightning's loops (the rest of fit)"] = fit - sum(parts.values())
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        profiler = ["+trainer.profiler._target_=lightning.pytorch.profilers.SimpleProfiler",
                    f"+trainer.profiler.dirpath={tmp}", "+trainer.profiler.filename=profile",
                    "+trainer.profiler.extended=true"]  # fmt: skip
        overrides = [*EAGER_STEPS, *args.overrides, *profiler, f"trainer.max_epochs={args.epochs}"]
        result = train_cli(overrides, Path(tmp), "profile")
        actions = parse_report((Path(tmp) / "fit-profile.txt").read_text())
    steps, fit = result["steps"], result["fit_s"]
    print(f"{result['precision']}, {steps} steps, {args.epochs} epoch(s), fit {fit:.1f} s")
    print("| part | seconds | ms/step | share of fit |\n|---|---|---|---|")
    for part, seconds in sorted(breakdown(actions, fit).items(), key=lambda kv: -kv[1]):
        print(f"| {part} | {seconds:.2f} | {1000 * seconds / steps:.2f} | {seconds / fit:.1%} |")


if __name__ == "__main__":
    main()
