"""The machine the experiments run on: NVIDIA GPUs through NVML when there are
any, otherwise CPU and memory through psutil.

Sampling is a handful of cheap library calls made on a timer in the event
loop; the app takes the sampler as a parameter so that tests and screenshots
can show fixed figures.
"""

from __future__ import annotations

from typing import Callable

import psutil
from textual.widgets import Static

from ar_tui.gpus import nvml_devices

GIB = 1024**3

Sampler = Callable[[], list[str]]


class NvmlSampler:
    """Utilisation, memory and temperature of every NVIDIA GPU."""

    def __init__(self) -> None:
        self._nvml, self._handles = nvml_devices()
        self._names = [self._name(h) for h in self._handles]

    def _name(self, handle) -> str:
        name = self._nvml.nvmlDeviceGetName(handle)
        return (name.decode() if isinstance(name, bytes) else name).replace("NVIDIA ", "")

    def __call__(self) -> list[str]:
        nvml = self._nvml
        lines = []
        for index, (handle, name) in enumerate(zip(self._handles, self._names)):
            try:
                util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                temp = nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            except nvml.NVMLError as exc:
                lines.append(f"gpu{index} {name}: {exc}")
                continue
            lines.append(
                f"gpu{index} {name}  {util:3d}%  {memory.used / GIB:.1f}/{memory.total / GIB:.1f} GiB  {temp}°C"
            )
        return lines


class PsutilSampler:
    """CPU and memory of the whole machine."""

    def __init__(self) -> None:
        # The first cpu_percent(None) call only sets the reference point.
        psutil.cpu_percent(interval=None)

    def __call__(self) -> list[str]:
        memory = psutil.virtual_memory()
        return [
            f"cpu  {psutil.cpu_percent(interval=None):5.1f}%  ({psutil.cpu_count()} cores)",
            f"mem  {memory.used / GIB:.1f}/{memory.total / GIB:.1f} GiB  ({memory.percent:.0f}%)",
            "gpu  none found (NVML)",
        ]


def default_sampler() -> Sampler:
    try:
        return NvmlSampler()
    except Exception:  # no driver, no library, no device: all mean "no NVIDIA GPU"
        return PsutilSampler()


class MachinePane(Static):
    def __init__(self, sampler: Sampler | None, interval: float = 2.0, *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__("", id=id, classes=classes, markup=False)
        self._sampler = sampler
        self._interval = interval
        self._shown = ""

    def on_mount(self) -> None:
        if self._sampler is None:
            self._sampler = default_sampler()
        self.sample()
        self.set_interval(self._interval, self.sample)

    def sample(self) -> None:
        try:
            lines = self._sampler()
        except Exception as exc:  # a flaky driver must not take the app down
            lines = [f"machine stats unavailable: {exc}"]
        text = "\n".join(lines)
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)
