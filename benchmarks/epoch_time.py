"""One training epoch of the seed recipe: a plain PyTorch loop vs the pipeline's Lightning module.

    python benchmarks/epoch_time.py                 # real data (data/processed/mnist.pt)
    python benchmarks/epoch_time.py --repeats 3     # alternate the two paths; medians and bests

Both paths see the same data, batch size, model, optimizer and thread count, in one process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor

from digitpipe import environment
from digitpipe.cli import VERSION_BASE
from digitpipe.config.settings import validate
from digitpipe.data.datamodule import scale_images
from digitpipe.paths import workspace_root
from digitpipe.training.build import build_callbacks, build_datamodule, build_model, make_trainer
from digitpipe.training.layout import ChannelsLast


def plain_fit(cfg, datamodule, epochs: int) -> tuple[float, torch.nn.Module]:
    """The reference: the loop anyone would write by hand around the same tensors; (seconds, model)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, validate(cfg)).net
    if any(isinstance(c, ChannelsLast) for c in build_callbacks(cfg)):  # the pipeline's layout
        model = model.to(memory_format=torch.channels_last)
    optimizer = instantiate(cfg.optimizer, _partial_=True)(model.parameters())
    train = datamodule.splits["train"]
    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(len(train)).split(cfg.data.batch_size):
            images, labels = scale_images(train.images[index]), train.labels[index]
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - started, model


def plain_epoch(cfg, datamodule) -> float:
    return plain_fit(cfg, datamodule, epochs=1)[0]


def lightning_epoch(cfg, datamodule) -> float:
    """The pipeline's path: DigitClassifier + DigitsDataModule under lightning.Trainer."""
    L.seed_everything(cfg.seed, verbose=False)
    settings = validate(cfg)
    # the configured callbacks (progress bar) minus the LR monitor, which needs a logger
    callbacks = [c for c in build_callbacks(cfg) if not isinstance(c, LearningRateMonitor)]
    with environment.restored():  # Trainer(deterministic=True) and make_trainer set torch flags
        trainer = make_trainer(
            cfg, settings, max_epochs=1, logger=False, enable_checkpointing=False,
            enable_model_summary=False, limit_val_batches=0, callbacks=callbacks,
        )  # fmt: skip
        started = time.perf_counter()
        trainer.fit(build_model(cfg, settings), datamodule=datamodule)
        return time.perf_counter() - started


def loaded_datamodule(cfg):
    """The datamodule with the training split in memory (prepared first if the data is missing)."""
    datamodule = build_datamodule(cfg, validate(cfg))
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def report(label: str, runs: list[float]) -> None:
    print(
        f"{label:<34} median {statistics.median(runs):6.2f} s/epoch, best {min(runs):6.2f}  "
        f"(runs: {', '.join(f'{t:.2f}' for t in runs)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--also", action="append", default=[], metavar="OVERRIDES",
        help="one more Lightning path, alternated with the others: space-separated overrides on top, "
        "e.g. --also trainer.deterministic=false",
    )  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.batch_size=128")
    args = parser.parse_args()
    with initialize_config_dir(str(workspace_root() / "conf"), version_base=VERSION_BASE):
        cfg = compose("config", overrides=args.overrides)
        variants = {
            extra: compose("config", overrides=[*args.overrides, *extra.split()]) for extra in args.also
        }
    datamodule = loaded_datamodule(cfg)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{len(datamodule.splits['train'])} images, batch {cfg.data.batch_size}"
    )
    plain, lightning = [], []
    also: dict[str, list[float]] = {extra: [] for extra in variants}
    for _ in range(args.repeats):
        plain.append(plain_epoch(cfg, datamodule))
        lightning.append(lightning_epoch(cfg, datamodule))
        for extra, variant in variants.items():
            also[extra].append(lightning_epoch(variant, datamodule))
    report("plain PyTorch loop", plain)
    report("Lightning module", lightning)
    for extra, runs in also.items():
        report(f"Lightning, {extra}", runs)
    print(
        f"ratio Lightning / plain: median {statistics.median(lightning) / statistics.median(plain):.3f}, "
        f"best {min(lightning) / min(plain):.3f}"
    )
    for extra, runs in also.items():
        ratio = statistics.median(runs) / statistics.median(lightning)
        print(f"ratio Lightning, {extra} / Lightning: median {ratio:.3f}")


if __name__ == "__main__":
    main()
