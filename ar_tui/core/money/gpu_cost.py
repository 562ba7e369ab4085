"""What the night's GPU time costs, at the price a person gives per GPU hour.

A run costs the time it held its slot's devices: its training and its
trusted evaluation, whatever the run was for (an experiment, a baseline run,
a re-run inside the noise band, a re-measure). A slot with several GPUs
(`cuda:0,1`) costs that many; a CPU slot counts as one device, so a price per
hour of the machine's slot works on a CPU box too.

Toolkit-free and engine-free: the engine's accounting counts with it, the
viewers and the report format what it counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ar_tui.core.errors import UserError

BUDGET_COVERS = ("tokens", "all")


def devices_in(device: str) -> int:
    """How many devices a slot holds: `cuda:0` one, `cuda:0,1` two, `cpu` one."""
    if device.startswith("cuda:"):
        return max(1, len([d for d in device.split(":", 1)[1].split(",") if d.strip()]))
    return 1


def gpu_usd(gpu_seconds: float, usd_per_hour: float) -> float:
    return gpu_seconds * usd_per_hour / 3600.0


@dataclass
class GpuPricing:
    usd_per_hour: float | None = None  # None: GPU time is not priced
    covers: str = "tokens"  # what --budget-usd caps: tokens only, or tokens and GPU time

    @property
    def priced(self) -> bool:
        return self.usd_per_hour is not None


def resolve_pricing(flag_rate: float | None, config_rate: float | None, covers: str | None,
                    budget_usd: float | None) -> GpuPricing:
    """The rate of the flag (or the stored options), else autoresearch.toml's
    `[cost] gpu_usd_per_hour`; raises UserError with one line for a choice
    that cannot be honoured."""
    covers = covers or "tokens"
    if covers not in BUDGET_COVERS:
        raise UserError(f"--budget-covers must be tokens or all, not {covers!r}")
    rate = flag_rate if flag_rate is not None else config_rate
    if rate is not None and (isinstance(rate, bool) or not rate >= 0):
        raise UserError(f"--gpu-usd-per-hour must be a price of 0 or more, not {rate!r}")
    if covers == "all" and budget_usd is not None and rate is None:
        raise UserError("--budget-covers all needs a GPU price: pass --gpu-usd-per-hour X "
                        "or set [cost] gpu_usd_per_hour in autoresearch.toml")
    return GpuPricing(float(rate) if rate is not None else None, covers)
