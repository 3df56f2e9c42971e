"""What diagnostics=on costs: one training epoch of the seed recipe with and without the
Diagnostics callback, alternated in one process (median of the repeats, and the ratio).

    python benchmarks/diagnostics_overhead.py --repeats 3
    python benchmarks/diagnostics_overhead.py --repeats 3 model.activation=sigmoid

"On" does everything a study cell does in an epoch: the probe at initialisation and after the epoch
(2,000 images), gradient norms at each of the first 300 steps and every 50th after, the step timer.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from epoch_time import lightning_epoch, loaded_datamodule  # as the Lightning-vs-plain benchmark
from hydra import compose, initialize_config_dir

from digitpipe.cli import VERSION_BASE
from digitpipe.paths import workspace_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.activation=sigmoid")
    args = parser.parse_args()
    with initialize_config_dir(str(workspace_root() / "conf"), version_base=VERSION_BASE):
        cfg = compose("config", overrides=args.overrides)
        with_diagnostics = compose("config", overrides=["diagnostics=on", *args.overrides])
    datamodule = loaded_datamodule(cfg)
    steps = -(-len(datamodule.splits["train"]) // cfg.data.batch_size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {steps} steps/epoch, "
          f"activation {cfg.model.activation}")  # fmt: skip
    off, on = [], []
    for _ in range(args.repeats):
        off.append(lightning_epoch(cfg, datamodule))
        on.append(lightning_epoch(with_diagnostics, datamodule))
    for label, runs in (("diagnostics off", off), ("diagnostics on", on)):
        median = statistics.median(runs)
        listed = ", ".join(f"{t:.2f}" for t in runs)
        print(
            f"{label:<16} median {median:6.2f} s/epoch ({1000 * median / steps:5.2f} ms/step)  runs: {listed}"
        )
    print(f"overhead: {statistics.median(on) / statistics.median(off) - 1:+.1%} (median on / median off - 1)")


if __name__ == "__main__":
    main()
