"""The targets ``make bench`` checks: one row of data per target, in the order printed.

A :class:`Target` names what it measures, its goal (an operator and a number, such as
``"<= 1.5"``), how to compute the measured value from the results (None when the suites it
needs did not run), and why it can miss, in measured terms. To add a target, add a row to
:data:`TARGETS`; :func:`bench.report.targets` evaluates them all.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentmem.bench import scale

Figures = dict[str, Any]
Measure = Callable[[Figures], float | None]

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Target:
    """One goal: ``measure(results)`` compared with ``goal``; ``why(results)`` on a miss."""

    name: str | Callable[[Figures], str]
    goal: str
    measure: Measure
    why: Callable[[Figures], str] = lambda _: ""

    def met(self, value: float) -> bool:
        op, number = self.goal.split()
        return _OPERATORS[op](value, float(number))

    def title(self, results: Figures) -> str:
        return self.name if isinstance(self.name, str) else self.name(results)


def _m(figure: Figures) -> float:
    return float(figure["median"])


def _get(results: Figures, *path: str) -> Any:
    """``results[path[0]][path[1]]...``, or None where a part is missing."""
    value: Any = results
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _ratio(results: Figures, top: tuple[str, ...], bottom: tuple[str, ...]) -> float | None:
    """The ratio of two medians, or None if either was not measured."""
    a, b = _get(results, *top), _get(results, *bottom)
    return None if a is None or b is None else _m(a) / _m(b)


# facts


def _category_key(results: Figures) -> str | None:
    sized = results.get("category", {})
    if not sized:
        return None
    with_naive = [s for s in sized if "naive_ms" in sized[s]]
    return "10000" if "10000" in sized else max(with_naive or sized, key=int)


def _category(results: Figures, top: str, bottom: str) -> float | None:
    key = _category_key(results)
    return (
        None if key is None else _ratio(results, ("category", key, top), ("category", key, bottom))
    )


def _category_title(text: str) -> Callable[[Figures], str]:
    return lambda results: text.format(f"{int(_category_key(results) or 0):,}")


def _why_store(results: Figures) -> str:
    f = results["facts"]
    return (
        f"one store_fact costs {_m(f['single_us']):.0f} µs against {_m(f['ping_us']):.0f} µs for "
        "a PING in the same run: the server runs a script of 4 writes and appends them to its "
        "AOF, and the client builds and checks the record and packs 9 EVALSHA arguments"
    )


def _why_category(results: Figures) -> str:
    row = results["category"][_category_key(results)]
    return (
        f"ours {_m(row['ours_ms']):.1f} ms against {_m(row['floor_ms']):.1f} ms for one HMGET "
        "of the same records left undecoded; the script also reads the category's ids "
        "(ZRANGE) and joins the records into one JSON array, which the client decodes into "
        f"typed facts (decoding the floor's records alone: {_m(row['decode_ms']):.1f} ms)"
    )


# documents


def _why_read(results: Figures) -> str:
    d = results["documents"]
    return (
        f"a latest-version read took {_m(d['read_us']):.0f} µs, a bare primary-key SELECT "
        f"{_m(d['bare_select_us']):.0f} µs: the read orders by version (no version to look up "
        "by key), checks the key, bounds the call with a deadline and decodes the JSON value"
    )


def _why_write(results: Figures) -> str:
    d = results["documents"]
    return (
        f"a versioned write took {_m(d['write_us']):.0f} µs, a bare INSERT commit "
        f"{_m(d['bare_insert_us']):.0f} µs: the write also locks and updates the key's head row "
        "(the version check and the fencing token), so its commit carries two rows of WAL"
    )


def _goodput(results: Figures) -> float | None:
    contended = _get(results, "documents", "contended")
    return None if contended is None else float(contended["goodput_per_s"])


def _lost(results: Figures) -> float | None:
    contended = _get(results, "documents", "contended")
    return None if contended is None else float(contended["lost_updates"])


# locks


def _why_lock(results: Figures) -> str:
    lk = results["locks"]
    return (
        f"{_m(lk['uncontended_per_s']):,.0f} cycles/s against redis-py's "
        f"{_m(lk['redis_py_per_s']):,.0f}: both take two Redis round trips; ours also waits "
        "for its fencing token, one PostgreSQL commit (durable: an fsync), so that no token "
        "repeats whatever Redis loses"
    )


def _why_contended(results: Figures) -> str:
    lk = results["locks"]
    return (
        f"{_m(lk['contended_per_s']):,.0f} cycles/s against redis-py's "
        f"{_m(lk['redis_py_contended_per_s']):,.0f}, doing the same cycles: redis-py's waiters "
        "sleep 0.1 s between tries, so a holder that releases and asks again at once wins the "
        "lock back and its contended throughput comes from one holder at a time; ours retries "
        "after a jittered 10-200 ms backoff"
    )


# handoffs


def _p99_ms(producers: int) -> Measure:
    def measure(results: Figures) -> float | None:
        figure = _get(results, "handoffs", f"producers_{producers}", "p99_us")
        return None if figure is None else _m(figure) / 1000

    return measure


def _why_p99(producers: int) -> Callable[[Figures], str]:
    def why(results: Figures) -> str:
        bare = _get(results, "handoffs", f"bare_producers_{producers}", "p99_us")
        floor = f" (redis-py alone: {_m(bare) / 1000:.1f} ms)" if bare else ""
        return (
            "producers, consumer and server share the machine's cores; the tail is scheduling "
            f"delay{floor}"
        )

    return why


def _why_handoff(results: Figures) -> str:
    h = results["handoffs"]
    return (
        f"p50 {_m(h['producers_1']['p50_us']):.0f} µs against "
        f"{_m(h['bare_producers_1']['p50_us']):.0f} µs with redis-py alone: the event is "
        "checked and encoded before XADD and parsed into a typed event after XREADGROUP"
    )


# service


def _why_pool(service: Figures) -> str:
    rates = [service[f"pool_{n}_runs_per_minute"] for n in (1, 2, 4)]
    return (
        f"pool {rates[2]:.1f} runs/min against {service['per_run_runs_per_minute']:.1f}; "
        f"1, 2, 4 workers per role gave {rates[0]:.0f}, {rates[1]:.0f}, {rates[2]:.0f}: "
        f"x{rates[2] / rates[1]:.2f} from 2 to 4 on {service['cpus']} CPUs "
        f"(load {service['load_average_1min']:.1f} at the start)"
    )


# scale


def _scale(series: str) -> Measure:
    def measure(results: Figures) -> float | None:
        by_agents = _get(results, "scale", series) or {}
        if "4" not in by_agents or _get(results, "scale", "by_agents", "1") is None:
            return None
        return float(by_agents["4"]["speedup"])

    return measure


TARGETS: list[Target] = [
    Target(
        "store_fact vs a PING round trip (x)",
        "<= 1.5",
        lambda r: _ratio(r, ("facts", "single_us"), ("facts", "ping_us")),
        _why_store,
    ),
    Target(
        "batch store vs naive (x)",
        ">= 25",
        lambda r: _ratio(r, ("facts", "batch_per_s"), ("facts", "naive_per_s")),
    ),
    Target(
        _category_title("read {} facts vs naive (x faster)"),
        ">= 20",
        lambda r: _category(r, "naive_ms", "ours_ms"),
    ),
    Target(
        _category_title("read {} facts vs the undecoded floor (x)"),
        "<= 2",
        lambda r: _category(r, "ours_ms", "floor_ms"),
        _why_category,
    ),
    Target(
        "latest-version read vs a bare primary-key SELECT (x)",
        "<= 1.5",
        lambda r: _ratio(r, ("documents", "read_us"), ("documents", "bare_select_us")),
        _why_read,
    ),
    Target(
        "versioned write vs a bare INSERT commit (x)",
        "<= 1.15",
        lambda r: _ratio(r, ("documents", "write_us"), ("documents", "bare_insert_us")),
        _why_write,
    ),
    Target("contended update() goodput, durable PostgreSQL (/s)", "> 0", _goodput),
    Target("lost updates in the contended test", "== 0", _lost),
    Target(
        "async with lock() vs redis-py's async with lock() (x time)",
        "<= 1.0",
        lambda r: _ratio(r, ("locks", "redis_py_per_s"), ("locks", "uncontended_per_s")),
        _why_lock,
    ),
    Target(
        "contended lock() vs redis-py's, 8 contenders (x faster)",
        ">= 5",
        lambda r: _ratio(r, ("locks", "contended_per_s"), ("locks", "redis_py_contended_per_s")),
        _why_contended,
    ),
    Target(
        "handoff p50 vs XADD -> XREADGROUP with redis-py alone (x)",
        "<= 1.1",
        lambda r: _ratio(
            r, ("handoffs", "producers_1", "p50_us"), ("handoffs", "bare_producers_1", "p50_us")
        ),
        _why_handoff,
    ),
    Target(
        "handoff p50 vs two-process round trip (x)",
        "<= 3",
        lambda r: _ratio(
            r, ("handoffs", "producers_1", "p50_us"), ("handoffs", "pingpong_rtt", "p50_us")
        ),
    ),
    Target("handoff p99, 1 producer (ms)", "< 5", _p99_ms(1), _why_p99(1)),
    Target("handoff p99, 8 producers (ms)", "< 5", _p99_ms(8), _why_p99(8)),
    Target(
        lambda r: f"{r['scale']['sources']}-source run, 4+4 vs 1+1 agents (x faster)",
        ">= 2.5",
        _scale("by_agents"),
        lambda r: scale.why_missed(r["scale"], "4"),
    ),
    Target(
        lambda r: f"{r['scale']['sources']}-source run, 4+4 (3+3 joined ahead) vs 1+1 (x faster)",
        ">= 2.5",
        _scale("joined_by_agents"),
        lambda r: scale.why_missed(r["scale"], "4", series="joined_by_agents"),
    ),
    Target(
        "service: runs/min, pool of 4 workers per role vs `agentmem run` 4 at a time (x)",
        ">= 3",
        lambda r: _get(r, "service", "pool_4_vs_per_run"),
        lambda r: _why_pool(r["service"]),
    ),
    Target(
        "service: 3 tenants' p95 behind a 10x tenant vs alone (x)",
        "<= 1.5",
        lambda r: _get(r, "service", "fairness", "light_p95_ratio"),
    ),
    Target(
        lambda r: (
            f"service: runs broken by {r['service']['drain_and_kill']['sigterm']} SIGTERM and "
            f"{r['service']['drain_and_kill']['sigkill']} SIGKILL of workers"
        ),
        "== 0",
        lambda r: _get(r, "service", "drain_and_kill", "broken_runs"),
        lambda r: "; ".join(r["service"]["drain_and_kill"]["problems"][:3]),
    ),
]
