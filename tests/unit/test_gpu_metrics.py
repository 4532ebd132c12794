"""GPU metrics through NVML on the metrics port: utilisation, memory, temperature and health per GPU the workers
may use; none at all, and a scrape that works, on a machine without an NVIDIA GPU."""

from __future__ import annotations

import pynvml
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tfscoring.observability.gpumetrics import GpuCollector, selected


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


class FailingNvml:
    """NVML as a failing driver answers (fault injection: the collector's handling is what is tested)."""

    def __init__(self, monkeypatch, **failures):
        monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
        defaults = {
            "nvmlDeviceGetCount": lambda: 1,
            "nvmlDeviceGetHandleByIndex": lambda index: f"handle-{index}",
            "nvmlDeviceGetUUID": lambda handle: "GPU-0000",
            "nvmlDeviceGetName": lambda handle: "Fake GPU",
            "nvmlDeviceGetMemoryInfo": lambda handle: type("Memory", (), {"used": 5, "total": 10})(),
            "nvmlDeviceGetUtilizationRates": lambda handle: type("Rates", (), {"gpu": 40})(),
            "nvmlDeviceGetTemperature": lambda handle, sensor: 55,
        }
        for name, call in {**defaults, **failures}.items():
            monkeypatch.setattr(pynvml, name, call)


def scrape() -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(GpuCollector(None))
    lines = generate_latest(registry).decode().splitlines()
    return {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("tfscoring_gpu_")}


def raise_(error):
    def call(*args):
        raise error

    return call


def test_a_driver_that_lost_every_gpu_is_one_unhealthy_series_and_the_scrape_goes_on(monkeypatch):
    FailingNvml(monkeypatch, nvmlDeviceGetCount=raise_(pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)))
    assert scrape() == {"tfscoring_gpu_healthy": 0.0}


def test_a_gpu_that_cannot_be_read_is_unhealthy(monkeypatch):
    FailingNvml(monkeypatch, nvmlDeviceGetMemoryInfo=raise_(pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)))
    assert scrape() == {"tfscoring_gpu_healthy": 0.0}


def test_a_reading_a_gpu_does_not_support_is_left_out_and_the_gpu_stays_healthy(monkeypatch):
    not_supported = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)  # a MIG instance's utilisation
    FailingNvml(monkeypatch, nvmlDeviceGetUtilizationRates=raise_(not_supported))
    assert scrape() == {
        "tfscoring_gpu_memory_used_bytes": 5.0,
        "tfscoring_gpu_memory_total_bytes": 10.0,
        "tfscoring_gpu_temperature_celsius": 55.0,
        "tfscoring_gpu_healthy": 1.0,
    }
