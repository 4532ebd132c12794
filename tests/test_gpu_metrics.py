"""GPU metrics through NVML on the metrics port: utilisation, memory, temperature and health per GPU the workers
may use; none at all, and a scrape that works, on a machine without an NVIDIA GPU."""

from __future__ import annotations

import pynvml
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tfscoring.gpumetrics import GpuCollector, selected


@pytest.mark.parametrize(
    ("visible", "count", "chosen"),
    [
        (None, 2, [0, 1]),  # unset: every GPU
        ("1,0", 2, [1, 0]),
        ("GPU-5b1c0e6a-aaaa-bbbb-cccc-0123456789ab,1", 2, ["GPU-5b1c0e6a-aaaa-bbbb-cccc-0123456789ab", 1]),
        ("0,7,1", 2, [0]),  # CUDA stops at the first entry it cannot use
        ("", 2, []),  # set and empty: no GPU for CUDA
        ("-1", 4, []),
    ],
)
def test_the_gpus_reported_are_those_cuda_visible_devices_gives_the_workers(visible, count, chosen):
    assert selected(visible, count) == chosen


def nvml_gpus() -> int:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    return pynvml.nvmlDeviceGetCount()


def test_each_gpu_has_its_series_and_a_machine_without_one_has_none():
    registry = CollectorRegistry()
    registry.register(GpuCollector(None))
    text = generate_latest(registry).decode()
    gpus = nvml_gpus()
    series = [line for line in text.splitlines() if line.startswith("tfscoring_gpu_")]
    if gpus == 0:
        assert series == []
        return
    for name in ("utilization_ratio", "memory_used_bytes", "memory_total_bytes", "temperature_celsius", "healthy"):
        assert sum(line.startswith(f"tfscoring_gpu_{name}{{") for line in series) == gpus, name
    assert all(line.endswith(" 1.0") for line in series if line.startswith("tfscoring_gpu_healthy{"))
