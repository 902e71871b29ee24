"""The history checker flags each kind of anomaly in a hand-made history, and not its legal
counterpart."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agentmem.chaos.checker import ACKS_LOST, Kind, Report, check, main
from agentmem.chaos.history import Op, OpType, write_history


class History:
    """A hand-made history: each call is an invoke and its completion."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def call(
        self,
        process: str,
        f: str,
        key: str,
        invoke: Any,
        span: tuple[int, int | None],
        *,
        result: Any = None,
        type_: OpType = "ok",
    ) -> History:
        start, end = span
        self.ops.append(Op(process, "invoke", f, key, invoke, start))
        if end is not None:
            self.ops.append(Op(process, type_, f, key, result, end))
        return self

    def acquire(
        self, process: str, lease: str, token: int, span: tuple[int, int], valid_until: int
    ) -> History:
        granted = {"lease": lease, "token": token, "valid_until": valid_until}
        return self.call(process, "acquire", "r", {"lease": lease}, span, result=granted)

    def write(
        self,
        process: str,
        value: Any,
        span: tuple[int, int | None],
        outcome: int | str,
        *,
        expected: int | None = None,
        token: int | None = None,
        lease: str | None = None,
    ) -> History:
        invoke = {"value": value, "expected": expected, "token": token, "lease": lease}
        if isinstance(outcome, str):
            error = {"error": outcome}
            return self.call(process, "write", "d", invoke, span, result=error, type_="fail")
        return self.call(process, "write", "d", invoke, span, result={"version": outcome})

    def read(self, process: str, span: tuple[int, int], version: int, value: Any) -> History:
        result = {"version": version, "value": value}
        return self.call(process, "read", "d", None, span, result=result)

    def check(self) -> Report:
        return check(sorted(self.ops, key=lambda op: op.time))


def kinds(report: Report) -> set[Kind]:
    return {a.kind for a in report.anomalies}


def test_a_token_granted_to_two_leases_is_flagged() -> None:
    """Two leases of one resource with the same token: token-repeated, naming both holders."""
    h = History().acquire("p1", "a", 5, (0, 10), 20).acquire("p2", "b", 5, (30, 40), 50)
    report = h.check()

    assert kinds(report) == {Kind.TOKEN_REPEATED}
    assert report.anomalies[0].processes == ["p1", "p2"]
    assert report.anomalies[0].keys == ["r"]
    assert (
        kinds(
            History().acquire("p1", "a", 5, (0, 10), 20).acquire("p2", "b", 6, (30, 40), 50).check()
        )
        == set()
    )


def test_a_smaller_token_granted_after_a_larger_is_flagged() -> None:
    """A lease asked for after one was granted token 6 gets 5: token-backwards."""
    h = History().acquire("p1", "a", 6, (0, 10), 20).acquire("p2", "b", 5, (30, 40), 50)

    assert kinds(h.check()) == {Kind.TOKEN_BACKWARDS}
    concurrent = History().acquire("p1", "a", 6, (0, 10), 20).acquire("p2", "b", 5, (5, 21), 50)
    assert kinds(concurrent.check()) == set()


def test_a_write_accepted_with_a_smaller_token_after_a_larger_is_flagged() -> None:
    """Version 2 accepted with token 5 after version 1 with token 6; a stale refusal is legal."""
    accepted = History().write("p1", "x", (0, 10), 1, token=6, lease="b")
    accepted.write("p2", "y", (20, 30), 2, token=5, lease="a")
    refused = History().write("p1", "x", (0, 10), 1, token=6, lease="b")
    refused.write("p2", "y", (20, 30), "stale", token=5, lease="a")

    assert Kind.WRITE_TOKEN_BACKWARDS in kinds(accepted.check())
    assert kinds(refused.check()) == set()


def test_one_token_accepted_from_two_leases_is_flagged() -> None:
    """Equal tokens on one document come from one lease only."""
    shared = History().write("p1", "x", (0, 10), 1, token=6, lease="a")
    shared.write("p2", "y", (20, 30), 2, token=6, lease="b")
    one_lease = History().write("p1", "x", (0, 10), 1, token=6, lease="a")
    one_lease.write("p1", "y", (20, 30), 2, token=6, lease="a")

    assert kinds(shared.check()) == {Kind.WRITE_TOKEN_SHARED}
    assert kinds(one_lease.check()) == set()


def test_overlapping_leases_are_flagged_with_the_overlap() -> None:
    """Lease b granted at 50 while lease a is valid until 100: 50 ns of overlap."""
    h = History().acquire("p1", "a", 1, (0, 10), 100).acquire("p2", "b", 2, (40, 50), 150)
    report = h.check()

    assert kinds(report) == {Kind.LEASE_OVERLAP}
    assert "overlap for 50 ns" in report.anomalies[0].description


def test_leases_that_follow_an_expiry_or_a_release_do_not_overlap() -> None:
    """A lease granted when the last expired, or after its release began, is legal."""
    expired = History().acquire("p1", "a", 1, (0, 10), 100).acquire("p2", "b", 2, (40, 100), 150)
    released = History().acquire("p1", "a", 1, (0, 10), 100)
    released.call("p1", "release", "r", {"lease": "a"}, (45, 60), result={"lease": "a"})
    released.acquire("p2", "b", 2, (40, 50), 150)

    assert kinds(expired.check()) == set()
    assert kinds(released.check()) == set()


def _permit(h: History, process: str, permit: str, span: tuple[int, int], until: int) -> None:
    invoke = {"permit": permit, "limit": 2}
    h.call(process, "sem_acquire", "s", invoke, span, result={**invoke, "valid_until": until})


def test_a_semaphore_over_its_limit_is_flagged() -> None:
    """Three permits valid at once under a limit of 2: semaphore-over-limit, once."""
    h = History()
    for n in range(3):
        _permit(h, f"p{n}", f"k{n}", (n, 10 + n), 100)
    report = h.check()

    assert kinds(report) == {Kind.SEMAPHORE_OVER_LIMIT}
    assert len(report.anomalies) == 1
    assert report.anomalies[0].processes == ["p0", "p1", "p2"]


def test_a_permit_granted_after_another_is_released_keeps_the_limit() -> None:
    """The third permit is granted after the first's release: never more than 2."""
    h = History()
    _permit(h, "p0", "k0", (0, 10), 100)
    _permit(h, "p1", "k1", (1, 11), 100)
    release = {"permit": "k0", "limit": 2}
    h.call("p0", "sem_release", "s", release, (20, 30), result=release)
    _permit(h, "p2", "k2", (15, 25), 100)

    assert kinds(h.check()) == set()


def test_a_stale_read_is_flagged() -> None:
    """A read that begins after version 1 was acknowledged and returns version 0."""
    stale = History().write("p1", "x", (0, 10), 1).read("p2", (20, 30), 0, None)
    concurrent = History().write("p1", "x", (0, 25), 1).read("p2", (20, 30), 0, None)
    report = stale.check()

    assert kinds(report) == {Kind.NOT_LINEARIZABLE}
    assert report.anomalies[0].processes == ["p2"]
    assert kinds(concurrent.check()) == set()


def test_a_lost_write_is_flagged() -> None:
    """Both writes acknowledged, then a read sees the first one's version and value."""
    lost = History().write("p1", "x", (0, 10), 1).write("p2", "y", (20, 30), 2)
    lost.read("p3", (40, 50), 1, "x")
    kept = History().write("p1", "x", (0, 10), 1).write("p2", "y", (20, 30), 2)
    kept.read("p3", (40, 50), 2, "y")

    assert kinds(lost.check()) == {Kind.NOT_LINEARIZABLE}
    assert kinds(kept.check()) == set()


def test_two_writes_acknowledged_one_version_are_flagged() -> None:
    """Two concurrent writes expecting version 0 both succeed: a lost update."""
    both = (
        History().write("p1", "x", (0, 10), 1, expected=0).write("p2", "y", (5, 15), 1, expected=0)
    )
    one = History().write("p1", "x", (0, 10), 1, expected=0)
    one.write("p2", "y", (5, 15), "conflict", expected=0)

    assert kinds(both.check()) == {Kind.VERSION_REPEATED, Kind.NOT_LINEARIZABLE}
    assert kinds(one.check()) == set()


def test_a_conflict_where_the_expected_version_matched_is_flagged() -> None:
    """A write expecting version 0 refused as a conflict while the document is certainly new."""
    h = History().write("p1", "x", (0, 10), "conflict", expected=0)

    assert kinds(h.check()) == {Kind.NOT_LINEARIZABLE}


def test_a_version_gap_is_flagged_unless_a_write_in_doubt_can_fill_it() -> None:
    """Versions 1 and 3 acknowledged: a gap, unless a write that never completed made 2."""
    gap = History().write("p1", "x", (0, 10), 1).write("p1", "z", (20, 30), 3)
    filled = History().write("p1", "x", (0, 10), 1).write("p2", "y", (12, None), 0)
    filled.write("p1", "z", (20, 30), 3)

    assert kinds(gap.check()) == {Kind.VERSION_GAP, Kind.NOT_LINEARIZABLE}
    assert kinds(filled.check()) == set()


def _handoff(h: History, process: str, outcome: OpType, start: int) -> None:
    entry = {"entry": "e1"}
    h.call(process, "effect", "t1", entry, (start, start + 1), result=entry, type_=outcome)


def test_a_handoff_acknowledged_without_its_effect_is_flagged() -> None:
    """An accepted ack with no effect is lost; with one effect in doubt it is not flagged."""
    lost = History().call("c1", "ack", "t1", {"entry": "e1"}, (0, 1), result={"entry": "e1"})
    in_doubt = History()
    _handoff(in_doubt, "c1", "info", 0)
    in_doubt.call("c2", "ack", "t1", {"entry": "e1"}, (5, 6), result={"entry": "e1"})

    assert kinds(lost.check()) == {Kind.HANDOFF_LOST}
    report = in_doubt.check()
    assert kinds(report) == set()
    assert report.subjects["tasks acknowledged with their effect in doubt"] == 1


def test_a_handoff_applied_twice_is_flagged() -> None:
    """Two ok effects of one task: duplicated; one ok and one refused as done is exactly once."""
    twice, once = History(), History()
    cases: list[tuple[History, OpType]] = [(twice, "ok"), (once, "fail")]
    for h, second in cases:
        _handoff(h, "c1", "ok", 0)
        _handoff(h, "c2", second, 10)
        h.call("c2", "ack", "t1", {"entry": "e1"}, (20, 21), result={"entry": "e1"})

    assert kinds(twice.check()) == {Kind.HANDOFF_DUPLICATED}
    assert kinds(once.check()) == set()


def _deliver(h: History, process: str, start: int) -> None:
    entry = {"entry": "e1"}
    h.call(process, "deliver", "t1", entry, (start, start + 1), result=entry)


def _ack(h: History, process: str, start: int) -> None:
    entry = {"entry": "e1"}
    h.call(process, "ack", "t1", entry, (start, start + 1), result=entry)


def test_an_ack_accepted_after_another_consumer_reclaimed_the_entry_is_flagged() -> None:
    """c1 acks after c2 was delivered the entry: stolen; c1 acking before that reclaim is not."""
    stolen, legal = History(), History()
    for h, ack_at in ((stolen, 30), (legal, 5)):
        _deliver(h, "c1", 0)
        _handoff(h, "c1", "ok", 2)
        _deliver(h, "c2", 10)
        _handoff(h, "c2", "fail", 12)
        _ack(h, "c1", ack_at)

    assert kinds(stolen.check()) == {Kind.HANDOFF_STOLEN}
    assert kinds(legal.check()) == set()


def test_one_entry_acked_by_two_consumers_is_flagged() -> None:
    """Two ok acks of one entry by different processes are stolen; a retried ack by one is not."""
    two, retried = History(), History()
    for h, second in ((two, "c2"), (retried, "c1")):
        _deliver(h, "c1", 0)
        _handoff(h, "c1", "ok", 2)
        _ack(h, "c1", 5)
        _ack(h, second, 8)

    assert kinds(two.check()) == {Kind.HANDOFF_STOLEN}
    assert kinds(retried.check()) == set()


def test_an_entry_delivered_again_after_its_ack_was_lost_is_counted_not_flagged() -> None:
    """c1's ack completed, then c2 was delivered the entry again (Redis lost the ack in a
    failover) and acked it: at-least-once delivery, counted in the summary; c2 acking without
    that second delivery is still stolen."""
    lost, stolen = History(), History()
    for h in (lost, stolen):
        _deliver(h, "c1", 0)
        _handoff(h, "c1", "ok", 2)
        _ack(h, "c1", 5)
    _deliver(lost, "c2", 10)
    _handoff(lost, "c2", "fail", 12)
    _ack(lost, "c2", 15)
    _ack(stolen, "c2", 15)

    report = lost.check()
    assert kinds(report) == set()
    assert report.subjects[ACKS_LOST] == 1
    assert kinds(stolen.check()) == {Kind.HANDOFF_STOLEN}


def _linearizable_history(seed: int) -> list[Op]:
    """Five processes writing and reading two documents, each operation taking effect at a
    random instant inside its interval; a few never complete."""
    rng = random.Random(seed)
    effects: list[tuple[int, int, str, str, dict[str, Any]]] = []
    clock = {f"p{n}": 0 for n in range(5)}
    for n in range(150):
        process = rng.choice(list(clock))
        start = clock[process] + rng.randint(1, 50)
        point = start + rng.randint(1, 50)
        end = point + rng.randint(1, 50)
        clock[process] = end
        f = rng.choice(["read", "write", "write"])
        invoke = {"value": n, "expected": None, "token": None, "lease": None}
        effects.append((point, start, process, f, invoke if f == "write" else {}))
        effects[-1][4]["end"] = end
        effects[-1][4]["key"] = rng.choice("ab")
    state = {"a": (0, None), "b": (0, None)}
    ops: list[Op] = []
    for _, start, process, f, spec in sorted(effects):
        key, end = spec.pop("key"), spec.pop("end")
        version, value = state[key]
        if f == "write":
            state[key] = (version + 1, spec["value"])
            result: dict[str, Any] = {"version": version + 1}
        else:
            result = {"version": version, "value": value}
        ops.append(Op(process, "invoke", f, key, spec if f == "write" else None, start))
        if rng.random() > 0.05:
            ops.append(Op(process, "ok", f, key, result, end))
        else:
            ops.append(Op(process, "info", f, key, None, end))
    return sorted(ops, key=lambda op: op.time)


@pytest.mark.parametrize("seed", range(5))
def test_a_generated_linearizable_history_has_no_anomalies(seed: int) -> None:
    """Histories made by applying operations at instants inside their intervals pass."""
    report = check(_linearizable_history(seed))

    assert report.anomalies == []
    assert report.undetermined == []
    assert report.operations["write"] + report.operations["read"] == 150


def test_the_cli_exits_1_on_anomalies_and_prints_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m agentmem.chaos.checker`` prints one line per anomaly after the summary."""
    bad, good = tmp_path / "bad.jsonl", tmp_path / "good.jsonl"
    write_history(bad, History().write("p1", "x", (0, 10), 1).read("p2", (20, 30), 0, None).ops)
    write_history(good, History().write("p1", "x", (0, 10), 1).read("p2", (20, 30), 1, "x").ops)

    assert main([str(bad)]) == 1
    out = capsys.readouterr().out
    assert "1 anomalies (not-linearizable 1)" in out
    assert "not-linearizable: document d:" in out
    assert main([str(good)]) == 0
    assert "no anomalies" in capsys.readouterr().out


def test_the_report_round_trips_through_json() -> None:
    """to_json gives the report back whole when decoded as a Report."""
    report = (
        History().acquire("p1", "a", 5, (0, 10), 20).acquire("p2", "b", 5, (30, 40), 50).check()
    )

    assert msgspec.json.decode(report.to_json(), type=Report) == report


def test_a_renewed_lease_stays_valid_until_its_new_deadline() -> None:
    """Lease a renewed to 200 overlaps b granted at 150; a failed renewal ends it at once."""
    renewed = History().acquire("p1", "a", 1, (0, 10), 100)
    renewed.call("p1", "renew", "r", {"lease": "a"}, (50, 60), result={"valid_until": 200})
    renewed.acquire("p2", "b", 2, (140, 150), 250)
    lost = History().acquire("p1", "a", 1, (0, 10), 100)
    lost.call("p1", "renew", "r", {"lease": "a"}, (50, 60), result={"error": "lost"}, type_="fail")
    lost.acquire("p2", "b", 2, (55, 70), 250)

    assert kinds(renewed.check()) == {Kind.LEASE_OVERLAP}
    assert kinds(lost.check()) == set()
