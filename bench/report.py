"""Present benchmark results: tables, the targets of issue #5, and a latency chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _m(figure: dict[str, Any]) -> float:
    return float(figure["median"])


def _spread(figure: dict[str, Any], fmt: str = "{:,.0f}") -> str:
    return (
        f"{fmt.format(figure['median'])} ({fmt.format(figure['min'])}-{fmt.format(figure['max'])})"
    )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target as a measured ratio with PASS/MISS."""
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float, goal: str, ok: bool) -> None:
        checks.append({"target": name, "measured": round(value, 2), "goal": goal, "pass": ok})

    if "facts" in results:
        facts = results["facts"]
        naive = _m(facts["naive_per_s"])
        batch, single = _m(facts["batch_per_s"]) / naive, _m(facts["single_per_s"]) / naive
        check("batch store vs naive (x)", batch, ">= 20", batch >= 20)
        check("single store vs naive (x)", single, ">= 2.5", single >= 2.5)
    if "category" in results:
        sized = results["category"]
        key = "10000" if "10000" in sized else max(sized, key=int)
        row = sized[key]
        if "naive_ms" in row:
            speedup = _m(row["naive_ms"]) / _m(row["ours_ms"])
            check(f"read {key} facts vs naive (x faster)", speedup, ">= 20", speedup >= 20)
        vs_floor = _m(row["ours_ms"]) / _m(row["floor_ms"])
        check(f"read {key} facts vs pipelined floor (x)", vs_floor, "<= 2", vs_floor <= 2)
    if "handoffs" in results:
        handoff = results["handoffs"]["producers_1"]
        bare = results["handoffs"]["pingpong_rtt_us"]["p50_us"]
        ratio = handoff["p50_us"] / bare
        check("handoff p50 vs two-process round trip (x)", ratio, "<= 3", ratio <= 3)
        p99_ms = handoff["p99_us"] / 1000
        check("handoff p99 (ms)", p99_ms, "< 5", p99_ms < 5)
    if "documents" in results:
        lost = results["documents"]["contended"]["lost_updates"]
        check("lost updates in the contended test", lost, "== 0", lost == 0)
    return checks


def print_tables(console: Console, record: dict[str, Any]) -> None:
    results = record["results"]
    table = Table(title="agentmem benchmarks: median (min-max)", show_lines=False)
    table.add_column("measure")
    table.add_column("naive (article)", justify="right")
    table.add_column("this project", justify="right")
    table.add_column("floor", justify="right")
    if "floor" in results:
        f = results["floor"]
        table.add_row("PING round trip (µs)", "", "", _spread(f["ping_rtt_us"], "{:,.1f}"))
        table.add_row(
            f"pipelined batch of {f['batch_size']} (ms)",
            "",
            "",
            _spread(f["pipelined_batch_ms"], "{:,.2f}"),
        )
    if "facts" in results:
        f = results["facts"]
        table.add_row(
            "store facts one by one (/s)", _spread(f["naive_per_s"]), _spread(f["single_per_s"]), ""
        )
        table.add_row(
            f"store facts in batches of {f['batch_size']} (/s)", "", _spread(f["batch_per_s"]), ""
        )
    for size, row in results.get("category", {}).items():
        naive = _spread(row["naive_ms"], "{:,.1f}") if "naive_ms" in row else "(skipped)"
        table.add_row(
            f"read a category of {int(size):,} facts (ms)",
            naive,
            _spread(row["ours_ms"], "{:,.1f}"),
            _spread(row["floor_ms"], "{:,.1f}"),
        )
    if "handoffs" in results:
        h = results["handoffs"]
        for producers in (1, 8):
            r = h[f"producers_{producers}"]
            table.add_row(
                f"handoff across processes, {producers} producer(s): p50/p99/max (µs)",
                "",
                f"{r['p50_us']:,.0f} / {r['p99_us']:,.0f} / {r['max_us']:,.0f}",
                f"{h['pingpong_rtt_us']['p50_us']:,.0f} (ping-pong p50)" if producers == 1 else "",
            )
    if "locks" in results:
        lk = results["locks"]
        table.add_row(
            "lock acquire+release (/s)",
            _spread(lk["naive_per_s"]),
            _spread(lk["uncontended_per_s"]),
            "",
        )
        table.add_row("lock with 8 contenders (/s)", "", _spread(lk["contended_8_per_s"]), "")
    if "documents" in results:
        d = results["documents"]
        c = d["contended"]
        table.add_row(
            "versioned writes, uncontended (/s)", "", _spread(d["uncontended_writes_per_s"]), ""
        )
        table.add_row(
            f"{c['writers']} writers x {c['updates_each']} update(): "
            "final / goodput / retries per commit",
            "",
            f"{c['final_value']}/{c['expected']} / {c['goodput_per_s']:,.0f}/s / "
            f"{c['retries_per_commit']:.2f}",
            "",
        )
    if "demo" in results and "error" not in results["demo"]:
        d = results["demo"]
        table.add_row("demo with stub LLM: wall (s)", "", f"{d['wall_seconds']:.1f}", "")
        table.add_row(
            "demo: agent seconds per handoff (non-LLM)",
            "",
            f"{d['agents_seconds_per_handoff'] * 1000:,.0f} ms",
            "",
        )
    console.print(table)
    checks = Table(title="targets (issue #5)")
    for column in ("target", "measured", "goal", "result"):
        checks.add_column(column)
    for t in record["targets"]:
        checks.add_row(
            t["target"],
            f"{t['measured']:,}",
            t["goal"],
            "[green]PASS[/]" if t["pass"] else "[red]MISS[/]",
        )
    console.print(checks)
    console.print(f"machine: {record['machine']}; took {record['seconds']:.0f} s")


def chart(results: dict[str, Any], path: Path) -> Path | None:
    """Latency distributions: handoffs (1 and 8 producers) and category reads, as a PNG."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    if "handoffs" in results:
        samples = [results["handoffs"][f"producers_{p}"]["samples_us"] for p in (1, 8)]
        axes[0].boxplot(samples, tick_labels=["1 producer", "8 producers"], showfliers=True)
        axes[0].axhline(
            results["handoffs"]["pingpong_rtt_us"]["p50_us"], linestyle="--", label="ping-pong p50"
        )
        axes[0].set_yscale("log")
        axes[0].set_ylabel("publish → receive (µs)")
        axes[0].set_title("Handoff latency across processes")
        axes[0].legend()
    if "category" in results:
        sizes = sorted(results["category"], key=int)
        for label, key in (
            ("naive", "naive_ms"),
            ("this project", "ours_ms"),
            ("floor (raw HMGET)", "floor_ms"),
        ):
            xs = [int(s) for s in sizes if key in results["category"][s]]
            ys = [
                results["category"][s][key]["median"]
                for s in sizes
                if key in results["category"][s]
            ]
            axes[1].plot(xs, ys, marker="o", label=label)
        axes[1].set_xscale("log")
        axes[1].set_yscale("log")
        axes[1].set_xlabel("facts in the category")
        axes[1].set_ylabel("read time (ms, median)")
        axes[1].set_title("Reading a category")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
