"""The history checker: does a chaos run's history (chaos.history) keep each primitive's promise?

As Jepsen does it: the workload records what every client was told, and the checker asks
whether any legal execution explains it. :func:`check` pairs each invoke with its completion
(chaos.calls) and runs these checks, each naming the processes, keys and times of what broke:

- **Fencing tokens** (``acquire``, ``write``). Two leases of one resource never share a token,
  and a lease acquired after another was granted (its invoke after the other's ok) has a
  larger one. On a document, the tokens of the writes accepted, in the order they were
  accepted (their versions), never decrease; equal tokens come from one lease.
- **Leases** (``acquire``, ``renew``, ``release``). A lease is valid from its acquire's ok
  until ``valid_until`` or its release's invoke, whichever is first; two leases of one
  resource are never valid at the same instant. ``renew`` (not in every history: key the
  resource, invoke ``{"lease": id}``, ok ``{"lease": id, "valid_until": ns}``) moves
  ``valid_until`` if it completed before it passed; a failed renew ends the lease when it
  completes (its holder then knows it is lost). ``valid_until`` is on the clock of the ops'
  ``time``, ``time.monotonic_ns()``.
- **Semaphores** (``sem_acquire``, ``sem_renew``, ``sem_release``). Likewise per permit
  (``{"permit": id}``); at no instant are more than ``limit`` permits valid.
- **Documents** (``read``, ``write``). Each key is a linearizable versioned document
  (chaos.models.DOCUMENT: the Wing & Gong search of chaos.linearizability), which also makes
  versions gapless and never repeated; those two are also reported by name when the
  acknowledged versions alone show them. Documents are taken to be empty when the history
  starts.
- **Handoffs** (``effect``, ``ack``). A task whose ack was accepted had its effect applied
  exactly once, and no task had it applied twice. An effect that completed with ``info`` may
  have been applied: a task acknowledged with no ok effect but one in doubt is counted as in
  doubt, not reported.
- **Handoff ownership** (``deliver``, ``ack``). An ack is accepted only from the entry's
  owner: an ok ack whose process had, when it invoked it, been superseded (another process
  was delivered the same entry after this one's delivery completed and before the ack's
  invoke) was *stolen*, and so are two ok acks of one entry by different processes, unless
  the second process was delivered the entry again after the first ack completed (the
  deliver's invoke is when its read was sent, so the entry was handed out after that ack).
  That one is *redelivered*: Redis lost the first ack (a failover to a replica that lacked it, a
  restart on older files) and handed the entry out again, which at-least-once delivery
  allows; it is counted in the summary, not reported. Effects are not held to ownership:
  their own conditional write makes them once-only, and a slow owner may apply one legally
  after a reclaim (the exactly-once check above covers them).

A linearizability search that runs out of budget makes that key *undetermined*: neither an
anomaly nor a pass. ``python -m agentmem.chaos.checker HISTORY_FILE...`` prints the summary and each
anomaly; it exits 0 when the history is valid, 1 on anomalies, 2 when nothing was found wrong
but a search was undetermined.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path

import msgspec

from agentmem.chaos import linearizability
from agentmem.chaos.calls import Call, pair
from agentmem.chaos.history import Op, read_history
from agentmem.chaos.models import DOCUMENT, document_operations

ACKS_LOST = "entries delivered again after an ok ack (the ack lost)"  # a subject, counted


class Kind(StrEnum):
    """What an anomaly broke."""

    TOKEN_REPEATED = "token-repeated"
    TOKEN_BACKWARDS = "token-backwards"
    WRITE_TOKEN_BACKWARDS = "write-token-backwards"
    WRITE_TOKEN_SHARED = "write-token-shared"
    LEASE_OVERLAP = "lease-overlap"
    SEMAPHORE_OVER_LIMIT = "semaphore-over-limit"
    NOT_LINEARIZABLE = "not-linearizable"
    VERSION_REPEATED = "version-repeated"
    VERSION_GAP = "version-gap"
    HANDOFF_LOST = "handoff-lost"
    HANDOFF_DUPLICATED = "handoff-duplicated"
    HANDOFF_STOLEN = "handoff-stolen"


class Anomaly(msgspec.Struct, frozen=True):
    """One broken promise: a one-line description and who, where and when."""

    kind: Kind
    description: str
    processes: list[str]
    keys: list[str]
    times: list[int]  # time.monotonic_ns() of the operations involved


class Report(msgspec.Struct):
    """What :func:`check` found."""

    operations: dict[str, int]  # operations checked, per kind (f)
    subjects: dict[str, int]  # resources, semaphores, documents, tasks checked
    anomalies: list[Anomaly]
    undetermined: list[str]  # documents whose search ran out of budget
    search_steps: int = 0
    search_seconds: float = 0.0

    @property
    def valid(self) -> bool | None:
        """True: nothing wrong; False: anomalies; None: nothing wrong found, some undetermined."""
        if self.anomalies:
            return False
        return None if self.undetermined else True

    def summary(self) -> str:
        """One line: what was checked and what was found."""
        kinds = ", ".join(f"{f} {n}" for f, n in sorted(self.operations.items()))
        subjects = ", ".join(f"{n} {s}" for s, n in self.subjects.items() if n)
        line = f"{sum(self.operations.values())} operations ({kinds}) on {subjects}: "
        if self.anomalies:
            counts = Counter(a.kind.value for a in self.anomalies)
            line += f"{len(self.anomalies)} anomalies (" + ", ".join(
                f"{k} {n}" for k, n in sorted(counts.items())
            )
            line += ")"
        else:
            line += "no anomalies"
        if self.undetermined:
            line += f"; {len(self.undetermined)} undetermined"
        return line

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)


def check(history: Iterable[Op], *, budget: linearizability.Budget | None = None) -> Report:
    """Check ``history`` (its operations in time order, as chaos.history.read_history gives)."""
    ops = list(history)
    calls = pair(ops)
    origin = ops[0].time if ops else 0
    report = Report(dict(Counter(c.f for c in calls)), {}, [], [])
    found = _Found(report, origin)
    by_f: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        by_f[c.f].append(c)
    _lock_tokens(found, by_f["acquire"])
    _leases(found, by_f)
    _semaphores(found, by_f)
    _write_tokens(found, by_f["write"])
    _versions(found, by_f["write"])
    _documents(found, by_f["read"] + by_f["write"], budget)
    _handoffs(found, by_f["effect"], by_f["ack"])
    _handoff_owners(found, by_f["deliver"], by_f["ack"])
    return report


def check_files(*paths: Path, budget: linearizability.Budget | None = None) -> Report:
    """Check the history made of these files (one per process, or one for all)."""
    return check(read_history(*paths), budget=budget)


class _Found:
    """Collects anomalies, describing times relative to the history's start."""

    def __init__(self, report: Report, origin: int) -> None:
        self.report = report
        self.origin = origin

    def t(self, ns: int | None) -> str:
        return "never" if ns is None else f"+{_duration(ns - self.origin)}"

    def at(self, c: Call) -> str:
        return f"{c.process} at {self.t(c.start)}"

    def add(self, kind: Kind, description: str, calls: Sequence[Call], *times: int) -> None:
        self.report.anomalies.append(
            Anomaly(
                kind,
                description,
                sorted({c.process for c in calls}),
                sorted({c.key for c in calls if c.key is not None}),
                sorted({c.start for c in calls} | set(times)),
            )
        )


def _duration(ns: int) -> str:
    for unit, size in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if abs(ns) >= size:
            return f"{ns / size:.3f} {unit}"
    return f"{ns} ns"


def _by_key(calls: Iterable[Call]) -> dict[str, list[Call]]:
    grouped: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        if c.key is not None:
            grouped[c.key].append(c)
    return grouped


def _lock_tokens(found: _Found, acquires: list[Call]) -> None:
    granted_ok = (c for c in acquires if c.type == "ok" and isinstance(c.field("token"), int))
    for resource, calls in _by_key(granted_ok).items():
        by_token: dict[object, Call] = {}
        for c in calls:
            first = by_token.setdefault(c.field("token"), c)
            if first is not c and first.field("lease") != c.field("lease"):
                found.add(
                    Kind.TOKEN_REPEATED,
                    f"resource {resource}: token {c.field('token')} granted twice, to lease "
                    f"{first.field('lease')} ({found.at(first)}) and {c.field('lease')} "
                    f"({found.at(c)})",
                    [first, c],
                )
        # a lease asked for after another was granted must get a larger token
        granted = sorted((c for c in calls if c.end is not None), key=lambda c: c.end or 0)
        highest: Call | None = None
        index = 0
        for c in sorted(calls, key=lambda c: c.start):
            while index < len(granted) and (granted[index].end or 0) < c.start:
                g = granted[index]
                if highest is None or g.field("token") > highest.field("token"):
                    highest = g
                index += 1
            if highest is not None and c.field("token") < highest.field("token"):
                found.add(
                    Kind.TOKEN_BACKWARDS,
                    f"resource {resource}: lease {c.field('lease')} ({found.at(c)}) got token "
                    f"{c.field('token')}, lower than {highest.field('token')} granted before "
                    f"it to lease {highest.field('lease')} ({found.at(highest)})",
                    [highest, c],
                )


def _intervals(
    acquires: list[Call], renewals: list[Call], releases: list[Call], name: str
) -> dict[str, list[tuple[int, int, Call]]]:
    """Per key, each ok acquire's validity: from its ok to its ``valid_until``, moved by each
    ok renewal that completed before it passed; cut short by a failed renewal's completion
    (the holder learned it was lost) and by the release's invoke."""
    ends: dict[object, int] = {}
    for r in releases:
        holder = r.field(name)
        ends[holder] = min(ends.get(holder, r.start), r.start)
    renewed: dict[object, list[Call]] = defaultdict(list)
    for r in renewals:
        if r.completed is not None and r.type in ("ok", "fail"):
            renewed[r.field(name)].append(r)
    intervals: dict[str, list[tuple[int, int, Call]]] = defaultdict(list)
    for c in acquires:
        if c.type != "ok" or c.key is None or c.completed is None:
            continue
        holder = c.field(name)
        valid_until = c.field("valid_until")
        end = sys.maxsize if valid_until is None else valid_until
        for r in sorted(renewed[holder], key=lambda r: r.completed or 0):
            done = r.completed or 0
            if done >= end:
                break
            if r.type == "fail":
                end = done
                break
            end = max(end, r.field("valid_until") or end)
        end = min(end, ends.get(holder, end))
        if end > c.completed:
            intervals[c.key].append((c.completed, end, c))
    return intervals


def _leases(found: _Found, by_f: dict[str, list[Call]]) -> None:
    acquires = by_f["acquire"]
    leases = _intervals(acquires, by_f["renew"], by_f["release"], "lease")
    found.report.subjects["resources"] = len(_by_key(acquires))
    for resource, intervals in leases.items():
        active: list[tuple[int, int, Call]] = []
        for start, end, c in sorted(intervals, key=lambda i: i[0]):
            active = [a for a in active if a[1] > start]
            for _, other_end, other in active:
                if other.field("lease") == c.field("lease"):
                    continue
                overlap = min(end, other_end) - start
                found.add(
                    Kind.LEASE_OVERLAP,
                    f"resource {resource}: lease {other.field('lease')} ({other.process}, "
                    f"valid {found.t(other.completed)} to {found.t(other_end)}) and lease "
                    f"{c.field('lease')} ({c.process}, valid {found.t(start)} to "
                    f"{found.t(end)}) overlap for {_duration(overlap)}",
                    [other, c],
                    start,
                )
            active.append((start, end, c))


def _semaphores(found: _Found, by_f: dict[str, list[Call]]) -> None:
    acquires = by_f["sem_acquire"]
    found.report.subjects["semaphores"] = len(_by_key(acquires))
    permits = _intervals(acquires, by_f["sem_renew"], by_f["sem_release"], "permit")
    for name, intervals in permits.items():
        limits = [c.field("limit") for _, _, c in intervals if c.field("limit") is not None]
        if not limits:
            continue
        limit = min(limits)
        # ends before starts at one instant: a permit released as another is granted
        events = sorted(
            [(end, 0, c) for _, end, c in intervals] + [(start, 1, c) for start, _, c in intervals],
            key=lambda e: (e[0], e[1]),
        )
        holding: dict[int, Call] = {}
        over = False
        for t, is_start, c in events:
            if is_start:
                holding[id(c)] = c
            else:
                holding.pop(id(c), None)
            if len(holding) > limit and not over:
                held = list(holding.values())
                found.add(
                    Kind.SEMAPHORE_OVER_LIMIT,
                    f"semaphore {name}: {len(held)} permits valid at {found.t(t)}, limit "
                    f"{limit}: " + ", ".join(f"{h.field('permit')} ({h.process})" for h in held),
                    held,
                    t,
                )
            over = len(holding) > limit


def _write_tokens(found: _Found, writes: list[Call]) -> None:
    accepted = (c for c in writes if c.type == "ok" and isinstance(c.field("token"), int))
    for key, calls in _by_key(accepted).items():
        calls.sort(key=lambda c: (c.field("version") or 0, c.completed or 0))
        highest: Call | None = None
        first_of: dict[object, Call] = {}
        for c in calls:
            token = c.field("token")
            if highest is not None and token < highest.field("token"):
                found.add(
                    Kind.WRITE_TOKEN_BACKWARDS,
                    f"document {key}: write by {found.at(c)} accepted with token {token} as "
                    f"version {c.field('version')}, after one by {found.at(highest)} accepted "
                    f"with token {highest.field('token')} as version {highest.field('version')}",
                    [highest, c],
                )
            first = first_of.setdefault(token, c)
            lease, first_lease = c.field("lease"), first.field("lease")
            if lease is not None and first_lease is not None and lease != first_lease:
                found.add(
                    Kind.WRITE_TOKEN_SHARED,
                    f"document {key}: token {token} accepted from two leases, {first_lease} "
                    f"({found.at(first)}) and {lease} ({found.at(c)})",
                    [first, c],
                )
                first_of[token] = c
            if highest is None or token > highest.field("token"):
                highest = c


def _versions(found: _Found, writes: list[Call]) -> None:
    for key, calls in _by_key(writes).items():
        acknowledged: dict[int, Call] = {}
        for c in calls:
            version = c.field("version") if c.type == "ok" else None
            if not isinstance(version, int):
                continue
            first = acknowledged.setdefault(version, c)
            if first is not c:
                found.add(
                    Kind.VERSION_REPEATED,
                    f"document {key}: version {version} acknowledged to two writes, "
                    f"{found.at(first)} and {found.at(c)}",
                    [first, c],
                )
        in_doubt = sum(1 for c in calls if c.end is None)
        missing = [v for v in range(1, max(acknowledged, default=0)) if v not in acknowledged]
        if len(missing) > in_doubt:
            last = acknowledged[max(acknowledged)]
            found.add(
                Kind.VERSION_GAP,
                f"document {key}: versions {missing} were acknowledged to no write, though "
                f"{last.field('version')} was ({found.at(last)}), and only {in_doubt} writes "
                "are in doubt",
                [last],
            )


def _documents(found: _Found, calls: list[Call], budget: linearizability.Budget | None) -> None:
    result = linearizability.check(DOCUMENT, document_operations(calls), budget=budget)
    found.report.search_steps = result.steps
    found.report.search_seconds = sum(p.seconds for p in result.partitions)
    found.report.subjects["documents"] = len(result.partitions)
    for p in result.partitions:
        if p.verdict == "unknown":
            found.report.undetermined.append(
                f"document {p.key}: linearizability search of {p.operations} operations ran "
                f"out of budget after {p.steps} steps"
            )
        elif p.verdict == "illegal" and p.stuck is not None:
            op = p.stuck
            stuck = next(c for c in calls if c.process == op.process and c.start == op.call)
            found.add(
                Kind.NOT_LINEARIZABLE,
                f"document {p.key}: no order of its {p.operations} operations explains them "
                f"(the furthest order placed {p.linearized}, then not {found.at(stuck)}: "
                f"{DOCUMENT.describe(op.input, op.output)})",
                [stuck],
            )


def _handoffs(found: _Found, effects: list[Call], acks: list[Call]) -> None:
    acked = {c.key: c for c in acks if c.type == "ok" and c.key is not None}
    by_task = _by_key(effects)
    in_doubt = 0
    for task in sorted(set(by_task) | set(acked)):
        applied = [c for c in by_task.get(task, []) if c.type == "ok"]
        doubtful = [c for c in by_task.get(task, []) if c.type == "info"]
        if len(applied) > 1:
            found.add(
                Kind.HANDOFF_DUPLICATED,
                f"task {task}: effect applied {len(applied)} times, by "
                + ", ".join(found.at(c) for c in applied),
                applied,
            )
        elif task in acked and not applied:
            if doubtful:
                in_doubt += 1
                continue
            ack = acked[task]
            found.add(
                Kind.HANDOFF_LOST,
                f"task {task}: acknowledged by {found.at(ack)} but its effect was never applied",
                [ack],
            )
    found.report.subjects["tasks"] = len(set(by_task) | set(acked))
    found.report.subjects["tasks acknowledged with their effect in doubt"] = in_doubt


def _handoff_owners(found: _Found, delivers: list[Call], acks: list[Call]) -> None:
    """Each ok ack came from the entry's owner, and one entry is acked ok by one process."""
    delivered = _by_key(c for c in delivers if c.type == "ok")
    redelivered = 0
    for task, calls in _by_key(c for c in acks if c.type == "ok").items():
        by_entry: dict[object, Call] = {}
        for ack in sorted(calls, key=lambda c: c.start):
            entry = ack.field("entry")
            first = by_entry.setdefault(entry, ack)
            if first is not ack and first.process != ack.process:
                again = [
                    d
                    for d in delivered.get(task, [])
                    if d.field("entry") == entry
                    and d.process == ack.process
                    and d.start > (first.completed or sys.maxsize)
                    and (d.end or 0) <= ack.start
                ]
                if not again:
                    found.add(
                        Kind.HANDOFF_STOLEN,
                        f"task {task}: entry {entry} acknowledged by {found.at(first)} and by "
                        f"{found.at(ack)}",
                        [first, ack],
                    )
                    continue
                redelivered += 1  # the first ack was lost: the entry was handed out again
                by_entry[entry] = ack
            same = [d for d in delivered.get(task, []) if d.field("entry") == entry]
            own = [d for d in same if d.process == ack.process and (d.end or 0) <= ack.start]
            if not own:
                continue
            mine = max(own, key=lambda d: d.start)
            thief = next(
                (
                    d
                    for d in same
                    if d.process != ack.process
                    and d.start > (mine.end or 0)
                    and (d.end or ack.start) < ack.start
                ),
                None,
            )
            if thief is not None:
                found.add(
                    Kind.HANDOFF_STOLEN,
                    f"task {task}: entry {entry} acknowledged by {found.at(ack)} after it was "
                    f"delivered to {found.at(thief)}",
                    [mine, thief, ack],
                )
    found.report.subjects[ACKS_LOST] = redelivered


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agentmem.chaos.checker",
        description="Check a chaos history (JSON lines of chaos.history.Op) for anomalies.",
    )
    parser.add_argument("files", nargs="+", type=Path, help="history files, merged by time")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="linearizability search budget, seconds"
    )
    args = parser.parse_args(argv)
    report = check_files(*args.files, budget=linearizability.Budget(timeout=args.timeout))
    if args.json:
        print(report.to_json().decode())
    else:
        print(report.summary())
        for anomaly in report.anomalies:
            print(f"  {anomaly.kind}: {anomaly.description}")
        for line in report.undetermined:
            print(f"  undetermined: {line}")
    if report.anomalies:
        return 1
    return 2 if report.undetermined else 0


if __name__ == "__main__":
    raise SystemExit(main())
