"""Present benchmark results: the table, the targets (:mod:`bench.targets`), a latency chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agentmem.bench import startup
from agentmem.bench.targets import TARGETS

Figures = dict[str, Any]


def _m(figure: Figures) -> float:
    return float(figure["median"])


def _spread(figure: Figures, fmt: str = "{:,.0f}") -> str:
    low, high = (fmt.format(figure[k]) for k in ("min", "max"))
    return f"{fmt.format(figure['median'])} ({low}-{high})"


def _latency(figure: Figures) -> str:
    return " / ".join(f"{_m(figure[k]):,.0f}" for k in ("p50_us", "p99_us", "max_us"))


def targets(results: Figures) -> list[Figures]:
    """Each target of :data:`bench.targets.TARGETS` that was measured: the value, the goal,
    PASS/MISS, and why where it misses."""
    checks: list[Figures] = []
    for target in TARGETS:
        value = target.measure(results)
        if value is None:
            continue
        ok = target.met(value)
        row = {"target": target.title(results), "measured": round(value, 3), "goal": target.goal}
        why = "" if ok else target.why(results)
        checks.append(row | {"pass": ok} | ({"why": why} if why else {}))
    if "startup" in results:  # start-up targets carry their own goals (bench/startup.py)
        checks += startup.targets(results["startup"])
    return checks


def print_tables(console: Console, record: Figures) -> None:
    console.print(_figures_table(record["results"]))
    checks = Table(title="targets")
    for column in ("target", "measured", "goal", "result"):
        checks.add_column(column)
    for t in record["targets"]:
        result = "[green]PASS[/]" if t["pass"] else "[red]MISS[/]"
        checks.add_row(t["target"], f"{t['measured']:,}", t["goal"], result)
    console.print(checks)
    for t in record["targets"]:
        if "why" in t:
            console.print(f"[red]MISS[/] {t['target']}: {t['why']}")
    for note in _notes(record["results"]):
        console.print(f"note: {note}")
    machine = record["machine"]
    console.print(
        f"machine: {machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}; "
        f"took {record['seconds']:.0f} s"
    )


def _notes(results: Figures) -> list[str]:
    notes = [row.get("naive_skipped", "") for row in results.get("category", {}).values()]
    notes = [n for n in notes if n]
    if "handoffs" in results:
        notes.append(results["handoffs"]["note"])
    demo = results.get("demo", {})
    notes += [f"demo: {demo[k]}" for k in ("skipped", "error", "note") if k in demo]
    return notes


def _figures_table(results: Figures) -> Table:
    table = Table(title="agentmem benchmarks: median (min-max) over repetitions")
    table.add_column("measure")
    table.add_column("naive (article)", justify="right")
    table.add_column("this project", justify="right")
    table.add_column("floor", justify="right")
    for rows in (
        _floor_rows(results),
        _fact_rows(results),
        _handoff_rows(results),
        _lock_and_document_rows(results),
        _demo_rows(results),
        _scale_rows(results),
    ):
        for row in rows:
            table.add_row(*row)
    return table


Row = tuple[str, str, str, str]


def _floor_rows(results: Figures) -> list[Row]:
    if "floor" not in results:
        return []
    f = results["floor"]
    return [
        ("PING round trip (µs)", "", "", _spread(f["ping_rtt_us"], "{:,.1f}")),
        (
            f"one pipelined batch of {f['batch_size']} PINGs (ms)",
            "",
            "",
            _spread(f["pipelined_batch_ms"], "{:,.2f}"),
        ),
    ]


def _fact_rows(results: Figures) -> list[Row]:
    rows: list[Row] = []
    if "facts" in results:
        f = results["facts"]
        rows.append(
            (
                f"store {f['facts']:,} facts one by one (/s)",
                _spread(f["naive_per_s"]),
                _spread(f["single_per_s"]),
                "",
            )
        )
        if "ping_us" in f:
            rows.append(
                (
                    "store_fact vs a PING, interleaved (µs)",
                    "",
                    _spread(f["single_us"], "{:,.0f}"),
                    _spread(f["ping_us"], "{:,.0f}"),
                )
            )
        rows.append(
            (f"store facts in batches of {f['batch_size']} (/s)", "", _spread(f["batch_per_s"]), "")
        )
    for size, row in results.get("category", {}).items():
        naive = _spread(row["naive_ms"], "{:,.1f}") if "naive_ms" in row else "(not run)"
        rows.append(
            (
                f"read a category of {int(size):,} facts (ms)",
                naive,
                _spread(row["ours_ms"], "{:,.1f}"),
                _spread(row["floor_ms"], "{:,.1f}"),
            )
        )
        rows.append(
            (
                f"  of which decoding {int(size):,} records (ms)",
                "",
                _spread(row["decode_ms"], "{:,.1f}"),
                "",
            )
        )
    return rows


def _handoff_rows(results: Figures) -> list[Row]:
    if "handoffs" not in results:
        return []
    h = results["handoffs"]
    rows: list[Row] = [
        (
            "two-process round trip (LPUSH/BRPOP ping-pong): p50/p99/max (µs)",
            "",
            "",
            _latency(h["pingpong_rtt"]),
        )
    ]
    rows += [
        (
            f"handoff to another process, {p} producer(s), floor redis-py alone: p50/p99/max (µs)",
            "",
            _latency(h[f"producers_{p}"]),
            _latency(h[f"bare_producers_{p}"]) if f"bare_producers_{p}" in h else "",
        )
        for p in (1, 8)
    ]
    return rows


def _lock_and_document_rows(results: Figures) -> list[Row]:
    rows: list[Row] = []
    if "locks" in results:
        lk = results["locks"]
        redis_py = lk.get("redis_py_per_s")
        rows.append(
            (
                "async with lock(), uncontended (/s); naive; redis-py's Lock as floor",
                _spread(lk["naive_per_s"]),
                _spread(lk["uncontended_per_s"]),
                _spread(redis_py) if redis_py else "",
            )
        )
        redis_py = lk.get("redis_py_contended_per_s")
        rows.append(
            (
                f"async with lock(), {lk['contenders']} contenders (/s); redis-py's Lock",
                "",
                _spread(lk["contended_per_s"]),
                _spread(redis_py) if redis_py else "",
            )
        )
    if "documents" in results:
        d = results["documents"]
        c = d["contended"]
        rows.append(
            ("versioned writes, uncontended (/s)", "", _spread(d["uncontended_writes_per_s"]), "")
        )
        if "write_us" in d:
            rows.append(
                (
                    "versioned write; floor: a bare INSERT commit (µs)",
                    "",
                    _spread(d["write_us"]),
                    _spread(d["bare_insert_us"]),
                )
            )
            rows.append(
                (
                    "latest-version read; floor: a bare primary-key SELECT (µs)",
                    "",
                    _spread(d["read_us"]),
                    _spread(d["bare_select_us"]),
                )
            )
        rows.append(
            (
                f"{c['writers']} writers x {c['updates_each']} update() on one key: "
                "final value / goodput / retries per commit",
                "",
                f"{c['final_value']}/{c['expected']} / {c['goodput_per_s']:,.0f}/s / "
                f"{c['retries_per_commit']:.2f}",
                "",
            )
        )
    return rows


def _demo_rows(results: Figures) -> list[Row]:
    demo = results.get("demo", {})
    if "wall_seconds" not in demo:
        return []
    rows: list[Row] = [
        (
            f"demo, stub LLM, {demo['runs']} run(s): wall (s)",
            "",
            _spread(demo["wall_seconds"], "{:,.2f}"),
            "",
        )
    ]
    if demo["step_ms"]:
        rows.append(
            (
                f"demo: time per handoff besides the LLM ({demo['handoffs_per_run']}/run, ms)",
                "",
                _spread(demo["step_ms"], "{:,.1f}"),
                "",
            )
        )
    return rows


def _scale_rows(results: Figures) -> list[Row]:
    figures = results.get("scale", {})
    series = [("by_agents", ""), ("joined_by_agents", " (joined ahead)")]
    return [
        (
            f"{figures['sources']} sources, {figures['stub_delay_seconds']} s LLM, "
            f"{n}+{n} agents{label}: wall (s), speedup (writing and review alone)",
            "",
            f"{_spread(row['wall_seconds'], '{:,.2f}')}, {row['speedup']:.2f}x "
            f"({row['writing_and_review_speedup']:.2f}x)",
            "",
        )
        for key, label in series
        for n, row in figures.get(key, {}).items()
        if not (label and n == "1")
    ]


def chart(results: Figures, path: Path) -> Path:
    """Latency distributions (handoffs, ping-pong) and category read times, as a PNG."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    if "handoffs" in results:
        h = results["handoffs"]
        samples = [h["pingpong_rtt"]["samples_us"]] + [
            h[f"producers_{p}"]["samples_us"] for p in (1, 8)
        ]
        labels = ["two-process\nround trip", "handoff\n1 producer", "handoff\n8 producers"]
        left.boxplot(samples, tick_labels=labels, whis=(1, 99), showfliers=True)
        left.set_yscale("log")
        left.set_ylabel("µs (whiskers: p1-p99)")
        left.set_title("Handoff latency across processes")
    if "category" in results:
        sizes = sorted(results["category"], key=int)
        for label, key in (
            ("naive (article)", "naive_ms"),
            ("this project", "ours_ms"),
            ("floor (same bytes, undecoded)", "floor_ms"),
        ):
            points = [
                (int(s), results["category"][s][key])
                for s in sizes
                if key in results["category"][s]
            ]
            right.errorbar(
                [x for x, _ in points],
                [f["median"] for _, f in points],
                yerr=[
                    [f["median"] - f["min"] for _, f in points],
                    [f["max"] - f["median"] for _, f in points],
                ],
                marker="o",
                capsize=3,
                label=label,
            )
        right.set_xscale("log")
        right.set_yscale("log")
        right.set_xlabel("facts in the category")
        right.set_ylabel("read time, ms (median, min-max)")
        right.set_title("Reading a whole category")
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
