"""GPU metrics through NVML, read at each scrape of the metrics port: per GPU the workers may use, its
utilisation, memory used and total, temperature, and whether NVML still reaches it.

Which GPUs: those of CUDA_VISIBLE_DEVICES (indices or UUIDs, as CUDA takes them), else every GPU NVML
sees.  NVML numbers GPUs in PCI bus order, CUDA fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID: on a
machine of mixed GPUs, set that (or use UUIDs) so that both mean the same GPUs.  On a machine without an
NVIDIA driver, or without GPUs, there are no GPU series at all.  A GPU NVML can no longer read (fallen off
the bus, say) is reported unhealthy (0); a reading a GPU does not support (a MIG instance's utilisation) is
left out.  The scrape never fails for a GPU, and each problem is logged once.
"""

from __future__ import annotations

import logging

import pynvml
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tfscoring import log

_LABELS = ["gpu", "uuid", "name"]


def selected(visible: str | None, count: int) -> list[str | int]:
    """The GPUs to report, as NVML indices or UUIDs, from CUDA_VISIBLE_DEVICES (None: unset) and the count NVML
    sees.  CUDA stops at the first entry it cannot use; so does this."""
    if visible is None:
        return list(range(count))
    chosen: list[str | int] = []
    for entry in (item.strip() for item in visible.split(",")):
        if entry.isdigit() and int(entry) < count:
            chosen.append(int(entry))
        elif entry.startswith(("GPU-", "MIG-")):
            chosen.append(entry)
        else:
            break
    return chosen


class GpuCollector(Collector):
    def __init__(self, visible: str | None):
        self._visible = visible
        self._ready = False
        self._logged: set[tuple[str, str]] = set()  # (GPU, problem) already logged: each is said once

    def collect(self):
        if not self._start():
            return
        try:
            gpus = selected(self._visible, pynvml.nvmlDeviceGetCount())
        except pynvml.NVMLError as err:  # the driver lost every GPU: one unhealthy series, the scrape goes on
            self._log_once("all", f"NVML cannot count the GPUs: {err}")
            healthy = GaugeMetricFamily("tfscoring_gpu_healthy", _HEALTHY, labels=_LABELS)
            healthy.add_metric(["all", "", ""], 0)
            yield healthy
            return
        if not gpus:
            return
        families = {
            "utilization": GaugeMetricFamily(
                "tfscoring_gpu_utilization_ratio", "share of NVML's sample period a kernel ran", labels=_LABELS
            ),
            "used": GaugeMetricFamily("tfscoring_gpu_memory_used_bytes", "GPU memory in use", labels=_LABELS),
            "total": GaugeMetricFamily("tfscoring_gpu_memory_total_bytes", "GPU memory in all", labels=_LABELS),
            "temperature": GaugeMetricFamily(
                "tfscoring_gpu_temperature_celsius", "GPU core temperature", labels=_LABELS
            ),
            "healthy": GaugeMetricFamily("tfscoring_gpu_healthy", _HEALTHY, labels=_LABELS),
        }
        for gpu in gpus:
            self._read(gpu, families)
        yield from families.values()

    def _start(self) -> bool:
        if self._ready:
            return True
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as err:  # no driver, no GPU: no GPU series
            self._log_once("nvml", f"no GPU metrics: NVML is not available ({err})", logging.INFO)
            return False
        self._ready = True
        return True

    def _read(self, gpu: str | int, families: dict[str, GaugeMetricFamily]) -> None:
        name = str(gpu)
        try:
            handle = (
                pynvml.nvmlDeviceGetHandleByIndex(gpu)
                if isinstance(gpu, int)
                else pynvml.nvmlDeviceGetHandleByUUID(gpu)
            )
            labels = [name, pynvml.nvmlDeviceGetUUID(handle), pynvml.nvmlDeviceGetName(handle)]
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        except pynvml.NVMLError as err:  # the GPU itself cannot be read: lost, fallen off the bus
            self._log_once(name, f"GPU {name} cannot be read through NVML: {err}")
            families["healthy"].add_metric([name, "", ""], 0)
            return
        families["used"].add_metric(labels, memory.used)
        families["total"].add_metric(labels, memory.total)
        readings = {
            "utilization": lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100,
            "temperature": lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
        }
        for key, read in readings.items():
            try:
                families[key].add_metric(labels, read())
            except pynvml.NVMLError_NotSupported:  # a MIG instance has no utilisation of its own, say
                self._log_once(f"{name}/{key}", f"GPU {name} does not report {key}: that series is left out")
            except pynvml.NVMLError as err:
                self._log_once(name, f"GPU {name} cannot be read through NVML: {err}")
                families["healthy"].add_metric(labels, 0)
                return
        families["healthy"].add_metric(labels, 1)

    def _log_once(self, where: str, message: str, level: int = logging.WARNING) -> None:
        if (where, message) not in self._logged:
            self._logged.add((where, message))
            log.log(level, "%s", message)


_HEALTHY = "1 while NVML reads the GPU, 0 once it cannot (lost, fallen off the bus)"
