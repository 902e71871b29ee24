"""Timing helpers: repeat a measurement, keep every sample, summarise with median and spread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Sample:
    """Repeated measurements of one quantity (seconds, or a rate)."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def as_dict(self) -> dict[str, float | list[float]]:
        return {"median": self.median, "min": self.low, "max": self.high, "values": self.values}


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def repeat(fn: Callable[[], Awaitable[object]], times: int) -> Sample:
    """Time ``fn`` ``times`` times."""
    sample = Sample()
    for _ in range(times):
        sample.values.append(await timed(fn))
    return sample


async def rate(fn: Callable[[], Awaitable[object]], operations: int, times: int) -> Sample:
    """Operations per second of ``fn`` (which does ``operations`` operations), ``times`` times."""
    durations = await repeat(fn, times)
    return Sample([operations / d for d in durations.values])


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
