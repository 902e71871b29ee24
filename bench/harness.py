"""Timing helpers: sizes, repetitions, interleaved comparisons, median and spread.

Every figure is measured several times. When two approaches are compared, their repetitions
are interleaved (naive, ours, naive, ours, ...) so that a burst of load on a shared machine
hurts both alike and their ratio stays meaningful.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis

Figures = dict[str, Any]
Work = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does; ``quick()`` is for the smoke test."""

    repeat: int = 5
    facts: int = 2000
    batch: int = 500
    categories: tuple[int, ...] = (1_000, 10_000, 100_000)
    naive_category_max: int = 10_000
    handoffs: int = 1000
    handoff_runs: int = 3
    lock_ops: int = 1000
    doc_writes: int = 500
    writers: int = 16
    updates_each: int = 100
    demo_runs: int = 3
    scale_sources: int = 20
    scale_agents: tuple[int, ...] = (1, 2, 4, 8)  # writers and reviewers each; 1 comes first
    scale_delay: float = 0.3  # seconds per stub LLM call
    scale_repeat: int = 2
    scale_concurrent_runs: int = 4  # runs at once, one node vs the 3-node cluster; 0 skips it

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            repeat=2,
            facts=50,
            batch=25,
            categories=(100, 300),
            naive_category_max=100,
            handoffs=40,
            handoff_runs=1,
            lock_ops=32,
            doc_writes=20,
            writers=4,
            updates_each=5,
            demo_runs=1,
            scale_sources=2,
            scale_agents=(1, 2),
            scale_delay=0.0,
            scale_repeat=1,
            scale_concurrent_runs=0,
        )


@dataclass(frozen=True)
class Context:
    """What every benchmark gets: the servers, one shared client, the sizes, a progress line."""

    redis_url: str
    database_url: str
    client: redis.Redis
    sizes: Sizes
    say: Callable[[str], None] = field(default=lambda _: None)


@dataclass
class Sample:
    """Repeated measurements of one quantity (seconds, a rate, a latency)."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def scaled(self, factor: float) -> Sample:
        return Sample([v * factor for v in self.values])

    def inverted(self, operations: float) -> Sample:
        """Durations of ``operations`` operations -> operations per second."""
        return Sample([operations / v for v in self.values])

    def as_dict(self) -> Figures:
        ordered = sorted(self.values)
        quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else ordered * 3
        return {
            "median": self.median,
            "min": ordered[0],
            "max": ordered[-1],
            "iqr": [quartiles[0], quartiles[2]],
            "values": self.values,
        }


def namespace() -> str:
    """A namespace no other benchmark uses."""
    return f"bench-{uuid.uuid4().hex[:10]}"


async def timed(fn: Work) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def compare(fns: Mapping[str, Work], times: int, *, warmup: bool = True) -> dict[str, Sample]:
    """Time each of ``fns`` ``times`` times, interleaving them; durations in seconds."""
    if warmup:
        for fn in fns.values():
            await fn()
    samples = {name: Sample() for name in fns}
    for _ in range(times):
        for name, fn in fns.items():
            samples[name].values.append(await timed(fn))
    return samples


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def latency_summary(runs: list[list[float]]) -> Figures:
    """p50/p99/max (µs) of each run of latency samples (seconds): median and spread of each."""
    summary: Figures = {"runs": len(runs), "count": sum(len(r) for r in runs)}
    for name, pick in (
        ("p50_us", lambda r: percentile(r, 50)),
        ("p99_us", lambda r: percentile(r, 99)),
        ("max_us", max),
    ):
        summary[name] = Sample([pick(r) * 1e6 for r in runs]).as_dict()
    summary["samples_us"] = [v * 1e6 for r in runs for v in r]
    return summary
