"""trainer.precision=auto: bf16 autocast only where the hardware has bf16 units."""

from __future__ import annotations

import pytest
import torch

from digitpipe.config.precision import cpu_has_bf16, resolve_precision
from digitpipe.environment import CPU_BF16 as CPU_BF16_ENV


@pytest.fixture
def cpu_bf16(monkeypatch):
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)  # the probes decide (pytest --cpu-bf16 sets it)

    def set_units(avx512_bf16: bool, amx: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)

    return set_units


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"), [
    (False, False, "32-true"), (True, False, "bf16-mixed"), (False, True, "bf16-mixed"),
])  # fmt: skip
def test_auto_on_the_cpu_uses_bf16_only_with_bf16_units(cpu_bf16, avx512_bf16, amx, expected):
    cpu_bf16(avx512_bf16, amx)
    assert cpu_has_bf16() is (expected == "bf16-mixed")
    assert resolve_precision("auto", "cpu") == expected


def test_auto_on_a_gpu_is_fp32_whatever_the_host_cpu_has(cpu_bf16):
    cpu_bf16(True, True)
    assert resolve_precision("auto", "gpu") == "32-true"


def test_a_named_precision_is_used_as_given(cpu_bf16):
    cpu_bf16(False, False)
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("32-true", "gpu") == "32-true"


def test_without_torchs_cpuid_probes_auto_falls_back_to_fp32(monkeypatch):
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert resolve_precision("auto", "cpu") == "32-true"


@pytest.mark.parametrize(("told", "expected"), [("1", "bf16-mixed"), ("0", "32-true")])
def test_the_cpu_can_be_told_what_it_has_whatever_its_probes_say(cpu_bf16, monkeypatch, told, expected):
    cpu_bf16(told == "0", told == "0")  # the probes say the opposite
    monkeypatch.setenv(CPU_BF16_ENV, told)
    assert resolve_precision("auto", "cpu") == expected
