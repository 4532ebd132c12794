"""GPU metrics through NVML, read at each scrape of the metrics port: per GPU the workers may use, its
utilisation, memory used and total, temperature, and whether NVML still reaches it.

Which GPUs: those of CUDA_VISIBLE_DEVICES (indices or UUIDs, as CUDA takes them), else every GPU NVML
sees.  On a machine without an NVIDIA driver, or without GPUs, there are no GPU series at all, and the
scrape goes on.  A GPU NVML can no longer read (fallen off the bus, say) is reported unhealthy (0), its
other series left out.
"""

from __future__ import annotations

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
        self._said = False

    def collect(self):
        if not self._start():
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
            "healthy": GaugeMetricFamily(
                "tfscoring_gpu_healthy", "1 while NVML reads the GPU, 0 once it cannot (lost, fallen off the bus)",
                labels=_LABELS,
            ),
        }  # fmt: skip
        for gpu in selected(self._visible, pynvml.nvmlDeviceGetCount()):
            self._read(gpu, families)
        yield from families.values()

    def _start(self) -> bool:
        if self._ready:
            return True
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as err:  # no driver, no GPU: no GPU series
            if not self._said:
                log.info("no GPU metrics: NVML is not available (%s)", err)
                self._said = True
            return False
        self._ready = True
        return True

    @staticmethod
    def _read(gpu: str | int, families: dict[str, GaugeMetricFamily]) -> None:
        name = str(gpu)
        labels = [name, "", ""]
        try:
            handle = (
                pynvml.nvmlDeviceGetHandleByIndex(gpu)
                if isinstance(gpu, int)
                else pynvml.nvmlDeviceGetHandleByUUID(gpu)
            )
            labels = [name, pynvml.nvmlDeviceGetUUID(handle), pynvml.nvmlDeviceGetName(handle)]
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            values = {
                "utilization": pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100,
                "used": memory.used,
                "total": memory.total,
                "temperature": pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
            }
        except pynvml.NVMLError as err:
            log.warning("GPU %s cannot be read through NVML: %s", name, err)
            families["healthy"].add_metric(labels, 0)
            return
        for key, value in values.items():
            families[key].add_metric(labels, value)
        families["healthy"].add_metric(labels, 1)
