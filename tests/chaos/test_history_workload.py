"""The history workload: what its processes record, under a fault, and what an unsafe run shows.

Each test runs the workload's processes for a few seconds against servers of this module's
own (a fault may restart Redis), and reads the history they wrote. The checker's verdict is
asserted, and the raw history.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentmem.chaos.history import Op, read_history
from agentmem.chaos.history_runs import HistoryOutcome, check_folder, history_run
from agentmem.chaos.session import ChaosServers
from agentmem.chaos.workload_faults import HistoryFault
from agentmem.memory import MemoryConfig, open_memory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def chaos_servers() -> Iterator[ChaosServers]:
    servers = ChaosServers()
    servers.start()
    yield servers
    servers.stop()


async def _run(
    servers: ChaosServers, root: Path, seed: int, faults: list[HistoryFault], **options: Any
) -> tuple[HistoryOutcome, list[Op]]:
    config = MemoryConfig(redis_url=servers.redis.url, database_url=servers.postgres.url)
    async with open_memory(config, "history-tests"):  # migrates the schema
        pass
    options = {"consumers": 1, **options}
    outcome = await history_run(
        servers, seed=seed, faults=faults, seconds=4.0, root=root, **options
    )
    return outcome, read_history(*sorted(outcome.folder.glob("*.jsonl")))


def _leases(ops: list[Op]) -> dict[str, dict[str, Any]]:
    """Each lease granted: its process, token, when granted, until when valid."""
    leases = {}
    for op in ops:
        if op.f == "acquire" and op.type == "ok":
            leases[op.value["lease"]] = {**op.value, "process": op.process, "granted": op.time}
    return leases


def _completion(ops: list[Op], f: str, lease: str) -> Op:
    """What the process was told of its ``f`` on behalf of ``lease``."""
    invoke = next(
        op for op in ops if op.f == f and op.type == "invoke" and op.value["lease"] == lease
    )
    return next(op for op in ops if op.process == invoke.process and op.time > invoke.time)


@pytest.mark.anyio
async def test_a_short_run_under_a_fault_records_every_kind_of_operation(
    chaos_servers: ChaosServers, tmp_path: Path
) -> None:
    """Locks, reads, fenced writes, both semaphores, and each step of a handoff are recorded."""
    outcome, ops = await _run(chaos_servers, tmp_path, 7, [HistoryFault.PARTITION])

    kinds = {op.f for op in ops if op.type != "invoke"}
    expected = {"acquire", "release", "read", "write", "sem_acquire", "sem_release"}
    assert kinds >= expected | {"publish", "deliver", "effect", "ack"}
    assert {op.key for op in ops if op.f == "sem_acquire"} == {"one", "two"}
    assert [f.fault for f in outcome.faults] == [HistoryFault.PARTITION]
    granted = [op for op in ops if op.f == "acquire" and op.type == "ok"]
    assert all(op.value["valid_until"] > op.time for op in granted)


@pytest.mark.anyio
async def test_a_lock_holder_paused_past_its_ttl_is_refused_or_told_it_lost_the_lease(
    chaos_servers: ChaosServers, tmp_path: Path
) -> None:
    """After SIGSTOP and SIGCONT, the holder's write with its old token is refused, or its
    release finds the lease gone."""
    outcome, ops = await _run(chaos_servers, tmp_path, 8, [HistoryFault.PAUSE_HOLDER])

    [paused] = outcome.faults
    lease = next(
        name
        for name, lease in _leases(ops).items()
        if lease["process"] == paused.process and lease["token"] == paused.token
    )
    write = _completion(ops, "write", lease)
    release = _completion(ops, "release", lease)
    refused = write.type == "fail" and write.value["error"] in ("stale", "conflict")
    lost = release.type == "fail" and release.value["error"] == "lost"
    assert refused or lost, (write, release)
    assert check_folder(outcome.folder).ok


@pytest.mark.anyio
async def test_writes_without_fencing_from_a_paused_holder_are_flagged(
    chaos_servers: ChaosServers, tmp_path: Path
) -> None:
    """With fencing off, the paused holder's blind write lands after another holder's lease
    began: the history shows a write outside its lease, and the checker flags it."""
    outcome, ops = await _run(
        chaos_servers, tmp_path, 9, [HistoryFault.PAUSE_HOLDER], unsafe="nofence"
    )

    [paused] = outcome.faults
    leases = _leases(ops)
    stale = [
        (op, leases[op.value["lease"]])
        for op in ops
        if op.f == "write" and op.type == "invoke" and op.process == paused.process
    ]
    late = [
        (write, lease)
        for write, lease in stale
        if write.time > lease["valid_until"]
        and any(lease["valid_until"] < other["granted"] < write.time for other in leases.values())
    ]
    assert late  # the write left after the lease ended and another holder took it
    write, _ = late[0]
    assert _completion(ops, "write", write.value["lease"]).type == "ok"  # nothing refused it
    assert not check_folder(outcome.folder).ok


@pytest.mark.anyio
async def test_leases_recorded_without_taking_the_lock_overlap_and_are_flagged(
    chaos_servers: ChaosServers, tmp_path: Path
) -> None:
    """Clients that record leases they never took show two valid leases at once."""
    outcome, ops = await _run(chaos_servers, tmp_path, 10, [], unsafe="nolock")

    leases = sorted(_leases(ops).values(), key=lambda lease: lease["granted"])
    overlapping = [
        (a, b)
        for a, b in itertools.pairwise(leases)
        if a["process"] != b["process"] and b["granted"] < a["valid_until"]
    ]
    assert overlapping
    assert not check_folder(outcome.folder).ok


@pytest.mark.anyio
async def test_consumers_that_steal_entries_back_are_flagged(
    chaos_servers: ChaosServers, tmp_path: Path
) -> None:
    """Consumers that stall past the reclaim time, then take the entry back with a raw XCLAIM
    and ack it with a raw XACK: an entry another consumer reclaimed is acked by both, and the
    checker flags it."""
    outcome, ops = await _run(chaos_servers, tmp_path, 11, [], consumers=2, unsafe="steal")

    acked: dict[str, set[str]] = {}
    for op in ops:
        if op.f == "ack" and op.type == "ok":
            acked.setdefault(op.value["entry"], set()).add(op.process)
    assert any(len(processes) > 1 for processes in acked.values())
    verdict = check_folder(outcome.folder)
    assert any(a.startswith("handoff-stolen:") for a in verdict.anomalies), verdict.summary


@pytest.mark.anyio
async def test_consumers_that_stall_lose_their_entries_and_the_history_is_valid(
    chaos_servers: ChaosServers, tmp_path: Path
) -> None:
    """The same stalls with the owned settling: a reclaimed entry's stalled ack is refused as
    lost, and the checker finds no anomaly."""
    outcome, ops = await _run(chaos_servers, tmp_path, 11, [], consumers=2, stall=True)

    lost = [op for op in ops if op.f == "ack" and op.type == "fail"]
    assert lost
    assert all(op.value["error"] == "lost" for op in lost)
    verdict = check_folder(outcome.folder)
    assert verdict.ok, (verdict.summary, verdict.anomalies)
