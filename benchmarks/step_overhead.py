"""Per-step cost of the seed recipe's training step on one device, without Lightning: what bounds it.

    python benchmarks/step_overhead.py --device cuda     # on a GPU: eager, syncs, bf16, compile, CUDA graphs
    python benchmarks/step_overhead.py --only graph      # only the variants whose name has 'graph'
    python benchmarks/step_overhead.py --device cpu      # the same variants that make sense on a CPU,
                                                         # and the deterministic mode's NaN fill

The data sits on the device (as the pipeline's IndexBatches keep it); every variant runs the same
RMSprop steps of batch 64, the variants alternated repeat by repeat, and reports ms/step (median of
repeats), the implied 5-epoch fit and the ratio to the first variant shown.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from digitpipe.models.convnet import build_convnet

SEED_STEPS = 5 * 860  # 5 epochs of 55,000 images at batch 64


def scale(images: torch.Tensor) -> torch.Tensor:
    return images.unsqueeze(1).float().div_(255)


def make(device: torch.device, capturable: bool = False, channels_last: bool = False):
    torch.manual_seed(0)
    model = build_convnet("relu", 0.1, 10, "glorot", 28).to(device)
    if channels_last:  # what the pipeline's ChannelsLast callback does
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, capturable=capturable)
    return model, optimizer


def eager_step(
    model, optimizer, autocast: torch.dtype | None = None, sync: bool = False, deterministic: str = "off"
) -> Callable:
    """deterministic: "off", "nan-fill" (Trainer(deterministic=True) alone) or "no-fill" (make_trainer's)."""

    def step(images, labels):
        torch.use_deterministic_algorithms(deterministic != "off")
        torch.utils.deterministic.fill_uninitialized_memory = deterministic == "nan-fill"
        with torch.autocast(images.device.type, autocast or torch.float32, enabled=autocast is not None):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if sync:
            loss.item()  # what a per-step log or progress-bar value costs: the host waits for the GPU

    return step


def graphed_step(model, optimizer, example: tuple[torch.Tensor, torch.Tensor]) -> Callable:
    """The whole step (forward, backward, a capturable RMSprop update) as one CUDA graph, captured
    as torch.cuda.graphs documents it; each replay first copies the batch into the graph's inputs."""
    static_images, static_labels = example[0].clone(), example[1].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream: optimizer state, cuDNN choices
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(static_images), static_labels).backward()
            optimizer.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = F.cross_entropy(model(static_images), static_labels)
        static_loss.backward()
        optimizer.step()

    def step(images, labels):
        static_images.copy_(images)
        static_labels.copy_(labels)
        graph.replay()

    step.keep = (graph, static_loss)  # the graph's outputs live as long as the step
    return step


def variants(device: torch.device, images, labels) -> dict[str, Callable[[], Callable]]:
    """Each variant's step, built on demand (compiling and capturing happen at the first call)."""
    steps = {
        "eager fp32": lambda: eager_step(*make(device)),
        "eager fp32 + loss.item() every step": lambda: eager_step(*make(device), sync=True),
        "eager bf16 autocast": lambda: eager_step(*make(device), autocast=torch.bfloat16),
        "torch.compile (default)": lambda: compiled_step(device),
        "eager fp32 channels_last": lambda: eager_step(*make(device, channels_last=True)),
    }
    if device.type == "cpu":  # the pipeline's CPU step: deterministic, with or without the fill
        for fill in ("nan-fill", "no-fill"):
            steps[f"eager fp32 channels_last, deterministic ({fill})"] = functools.partial(
                lambda fill: eager_step(*make(device, channels_last=True), deterministic=fill), fill
            )
    if device.type == "cuda":
        steps['torch.compile(mode="reduce-overhead")'] = lambda: compiled_step(device, "reduce-overhead")
        example = scale(images[:64]), labels[:64]
        whole = lambda: graphed_step(*make(device, capturable=True), example)  # noqa: E731
        steps["the whole step as one CUDA graph"] = whole
    return steps


def compiled_step(device: torch.device, mode: str | None = None) -> Callable:
    model, optimizer = make(device)
    return eager_step(torch.compile(model, mode=mode), optimizer)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable, images, labels, count: int, device: torch.device) -> float:
    """ms per step over `count` steps drawn by index from the device-resident data."""
    order = torch.randperm(len(labels), device=device)[: count * 64].view(count, 64)
    sync(device)
    started = time.perf_counter()
    for index in order:
        step(scale(images[index]), labels[index])
    sync(device)
    return (time.perf_counter() - started) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="run only the variants whose name contains this")
    parser.add_argument("--skip", help="skip the variants whose name contains this")
    args = parser.parse_args()
    device = torch.device(args.device)
    cpu = f"CPU, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    print(f"{name}; torch {torch.__version__}; {args.steps} steps x {args.repeats} repeats", flush=True)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (60_000, 28, 28), dtype=torch.uint8, generator=generator).to(device)
    labels = torch.randint(0, 10, (60_000,), generator=generator).to(device)
    chosen = {
        label: build for label, build in variants(device, images, labels).items()
        if not (args.only and args.only not in label) and not (args.skip and args.skip in label)
    }  # fmt: skip
    steps = {}
    for label, build in chosen.items():
        steps[label] = build()
        warmup = min(20, args.steps)  # compiling, cuDNN autotuning, capture: done in the first steps
        time_steps(steps[label], images, labels, warmup, device)
    runs: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(args.repeats):  # alternated, so that a machine that drifts drifts for all
        for label, step in steps.items():
            runs[label].append(time_steps(step, images, labels, args.steps, device))
    first = statistics.median(next(iter(runs.values())))
    print(f"| variant | ms/step | 5-epoch fit ({SEED_STEPS} steps) | vs the first |\n|---|---|---|---|")
    for label, times in runs.items():
        ms = statistics.median(times)
        print(f"| {label} | {ms:.3f} | {ms * SEED_STEPS / 1000:.1f} s | {ms / first:.3f}x |", flush=True)


if __name__ == "__main__":
    main()
