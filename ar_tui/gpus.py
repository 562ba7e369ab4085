"""Which NVIDIA GPUs this machine has: asked once here for the CLI (one slot
per visible GPU) and the machine pane (what each GPU is doing).

Toolkit-free. NVML comes from nvidia-ml-py; a machine without the driver
library, or without a GPU, is a CPU machine and nothing here raises for it
except `nvml_devices`, whose caller falls back to CPU figures.
"""

from __future__ import annotations

import os
from typing import Any

from ar_tui.core.errors import UserError


def nvml_devices() -> tuple[Any, list[Any]]:
    """The initialised pynvml module and a handle per GPU. Raises when the
    driver library is missing or there is no GPU; the caller shuts NVML down
    (or leaves it up for as long as it samples)."""
    import pynvml  # nvidia-ml-py; raises when the driver library is missing

    pynvml.nvmlInit()
    count = pynvml.nvmlDeviceGetCount()
    if count == 0:
        pynvml.nvmlShutdown()
        raise RuntimeError("no NVIDIA GPU")
    return pynvml, [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]


def visible_gpus() -> list[str]:
    """The GPU indices a training process may use: CUDA_VISIBLE_DEVICES when it
    is set (empty or -1 hides them all), else every GPU that NVML sees."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        nvml, handles = nvml_devices()
    except Exception:  # no driver, no library, no device: a CPU machine
        return []
    try:
        return [str(i) for i in range(len(handles))]
    finally:
        nvml.nvmlShutdown()


def detect_devices(slots: int | None, devices: str | None) -> list[str]:
    """The device of each slot: the GPUs named by `devices` ("0,2,3"), else
    one slot per visible GPU, else one CPU slot; `slots` asks for that many."""
    if devices:
        indices = [d.strip() for d in devices.split(",") if d.strip()]
        if not indices or not all(d.isdigit() for d in indices):
            raise UserError(f"--devices must be GPU indices like 0,2,3, not {devices!r}")
        return [f"cuda:{d}" for d in indices]
    gpus = visible_gpus()
    if slots is not None:
        if slots < 1:
            raise UserError("--slots must be at least 1")
        return [f"cuda:{g}" for g in gpus[:slots]] if len(gpus) >= slots else ["cpu"] * slots
    return [f"cuda:{g}" for g in gpus] or ["cpu"]
