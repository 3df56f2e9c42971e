"""`trainer.precision=auto`: bf16 autocast where it pays for this network, full fp32 elsewhere."""

from __future__ import annotations

import os

import torch

from digitpipe.environment import CPU_BF16


def cpu_has_bf16() -> bool:
    """True on CPUs with bf16 multiply-add units (AVX512-BF16 or AMX), where bf16 autocast runs at
    about twice the fp32 rate; elsewhere bf16 is emulated and several times slower than fp32."""
    if os.environ.get(CPU_BF16) in ("0", "1"):  # told, e.g. by the tests
        return os.environ[CPU_BF16] == "1"
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own CPUID checks
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def resolve_precision(precision: str, accelerator: str) -> str:
    """The Lightning precision a training runs with: `precision` itself unless it is `auto`.

    On a GPU `auto` is fp32: a 93k-parameter network is bound by kernel launches there, not
    arithmetic, and autocast only adds cast kernels (docs/speed.md).
    """
    if precision != "auto":
        return precision
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    return "bf16-mixed" if on_cpu and cpu_has_bf16() else "32-true"
