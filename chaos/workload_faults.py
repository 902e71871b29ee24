"""The faults of the history runs, each one function of a running :class:`WorkloadRun`.

Each draws what it hits and for how long from the run's seeded ``random.Random`` and returns
what it did (:class:`Inflicted`), or None when there was nothing to hit:

- ``pause holder``: a client found holding lock ``res`` (its history's last line is the
  acquire's ``ok`` or the read after it) is stopped with SIGSTOP for longer than the lease's
  TTL, then continued: the classic fencing case. Its write with the old token must then be
  refused, or its lease found lost.
- ``drop reply``: the next reply from Redis (or PostgreSQL) to one process is thrown away and
  its connection cut (:meth:`~chaos.proxy.Relay.drop_next_reply`).
- ``partition``: one process cut off from Redis (or PostgreSQL) for 1.5-3.5 s.
- ``redis rollback``: Redis's append-only files are copied, the workload goes on 1-2.5 s, then
  Redis is stopped and started again on the copy: it forgets its last writes, as a server
  restored from a backup or a lagging disk would. It stays down at least a lease's TTL:
  the leases and permits it forgets have then expired for their holders too. Exclusion
  when Redis comes back sooner without them is not promised (docs/durability.md): a holder
  would still hold what Redis grants again.
- ``wal disk full``: the producer's write-ahead log is on a small tmpfs; it is filled for
  1-2.5 s, then freed. Skipped when the tmpfs could not be mounted (not root).
- ``cluster failover`` (on a Redis Cluster only, :mod:`chaos.failover`): the primary serving
  the run's namespace is killed after 1-2 s of writes its paused replica never got, and the
  replica is promoted without them; the killed node is then restarted as its replica, or
  left down until the run ends (as the seed draws).

On a cluster the processes reach Redis without a relay, so ``drop reply`` and ``partition``
hit their PostgreSQL traffic only, and ``redis rollback`` is skipped.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import anyio
import msgspec

from agentmem.chaos.failover import fail_over, failover_window
from agentmem.chaos.history import Op
from agentmem.chaos.proxy import Relay
from agentmem.chaos.workload import LOCK_TTL, RESOURCE, SEM_TTL
from agentmem.chaos.workload_run import WorkloadProcess, WorkloadRun
from agentmem.devservers import EmbeddedRedis
from agentmem.devservers.cluster import LocalCluster

_HOLDER_WAIT = 5.0  # seconds to find a client holding the lock
_LAST_BYTES = 4096


class HistoryFault(StrEnum):
    PAUSE_HOLDER = "pause holder"
    DROP_REPLY = "drop reply"
    PARTITION = "partition"
    REDIS_ROLLBACK = "redis rollback"
    WAL_DISK_FULL = "wal disk full"
    CLUSTER_FAILOVER = "cluster failover"


@dataclass(frozen=True, slots=True)
class Inflicted:
    fault: HistoryFault
    what: str  # who was hit, how
    at: float  # seconds after the work began
    seconds: float  # how long it lasted
    process: str = ""  # the process it hit, if one
    token: int | None = None  # the fencing token a paused holder held

    def describe(self) -> str:
        return f"{self.what} @{self.at:.1f}s"


FaultFn = Callable[[WorkloadRun, random.Random], Awaitable[Inflicted | None]]


async def pause_holder(run: WorkloadRun, rng: random.Random) -> Inflicted | None:
    """SIGSTOP a client while it holds the lock and has not sent its write yet, past the
    lease's TTL; then SIGCONT. A stop that lands too late (the write already sent) is undone
    at once and tried again."""
    clients = run.named("client")
    rng.shuffle(clients)
    pause = rng.uniform(LOCK_TTL + 0.5, LOCK_TTL + 2.0)
    with anyio.move_on_after(_HOLDER_WAIT):
        while True:
            for proc in clients:
                if proc.process is None or proc.process.returncode is not None:
                    continue
                if _holding(proc) is None:
                    continue
                proc.process.send_signal(signal.SIGSTOP)
                held = _holding(proc)  # still before its write, now that it cannot move?
                if held is None:
                    proc.process.send_signal(signal.SIGCONT)
                    continue
                at = run.elapsed()
                try:
                    await anyio.sleep(pause)
                finally:
                    proc.process.send_signal(signal.SIGCONT)
                what = f"paused {proc.name} holding {RESOURCE} (token {held}) {pause:.1f}s"
                return Inflicted(HistoryFault.PAUSE_HOLDER, what, at, pause, proc.name, held)
            await anyio.sleep(0.005)
    return None


def _holding(proc: WorkloadProcess) -> int | None:
    """The fencing token ``proc`` holds, if its history ends inside a lock, before the write
    (the acquire's ``ok``, then at most the read)."""
    try:
        with proc.history.open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(0, size - _LAST_BYTES))
            lines = file.read().splitlines()[-3:]
    except FileNotFoundError:
        return None
    try:
        ops = [msgspec.json.decode(line, type=Op) for line in lines]
    except msgspec.DecodeError:
        return None
    for op in reversed(ops):
        if op.f == "acquire" and op.type == "ok":
            return int(op.value["token"])
        if op.f != "read":
            return None
    return None


async def drop_reply(run: WorkloadRun, rng: random.Random) -> Inflicted | None:
    """Throw away the next reply to one process (waiting up to 3 s for one to come)."""
    proc = rng.choice(run.processes)
    server, relay = _relay(proc, rng)
    at = run.elapsed()
    dropped = relay.dropped
    relay.drop_next_reply()
    with anyio.move_on_after(3.0):
        while relay.dropped == dropped:  # noqa: ASYNC110 - the relay counts, it signals nothing
            await anyio.sleep(0.01)
    if relay.dropped == dropped:
        relay.cancel_drop()
        return None
    what = f"dropped a {server} reply to {proc.name}"
    return Inflicted(HistoryFault.DROP_REPLY, what, at, 0.0, proc.name)


async def partition(run: WorkloadRun, rng: random.Random) -> Inflicted | None:
    proc = rng.choice(run.processes)
    server, relay = _relay(proc, rng)
    seconds = rng.uniform(1.5, 3.5)
    at = run.elapsed()
    await relay.partition(seconds)
    what = f"partitioned {proc.name} from {server} {seconds:.1f}s"
    return Inflicted(HistoryFault.PARTITION, what, at, seconds, proc.name)


def _relay(proc: WorkloadProcess, rng: random.Random) -> tuple[str, Relay]:
    """Redis or PostgreSQL, drawn; PostgreSQL when the process reaches Redis directly."""
    server = rng.choice(("Redis", "PostgreSQL"))
    if server == "Redis" and proc.redis is not None:
        return server, proc.redis
    return "PostgreSQL", proc.postgres


async def redis_rollback(run: WorkloadRun, rng: random.Random) -> Inflicted | None:
    """Copy Redis's append-only files, go on, then restart Redis on the copy."""
    if not isinstance(run.redis, EmbeddedRedis):
        return None
    at = run.elapsed()
    live = run.redis.data_dir / "appendonlydir"
    copy = run.scratch / "appendonlydir-copy"
    await anyio.to_thread.run_sync(_copy_tree, live, copy)
    later = rng.uniform(1.0, 2.5)
    await anyio.sleep(later)
    began = time.monotonic()
    await anyio.to_thread.run_sync(run.redis.stop)
    await anyio.to_thread.run_sync(_copy_tree, copy, live)
    await anyio.sleep(max(0.0, began + max(LOCK_TTL, SEM_TTL) - time.monotonic()))
    await anyio.to_thread.run_sync(run.redis.start)
    what = f"Redis restarted on its files of {later:.1f}s before"
    return Inflicted(HistoryFault.REDIS_ROLLBACK, what, at, time.monotonic() - began)


def _copy_tree(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


async def wal_disk_full(run: WorkloadRun, rng: random.Random) -> Inflicted | None:
    """Fill the producer's log disk for a while, then free it."""
    if not run.wal_mounted:
        return None
    at = run.elapsed()
    filler = run.wal_dir / "filler"
    seconds = rng.uniform(1.0, 2.5)
    await anyio.to_thread.run_sync(_fill, filler)
    try:
        await anyio.sleep(seconds)
    finally:
        filler.unlink(missing_ok=True)
    what = f"filled producer-1's log disk {seconds:.1f}s"
    return Inflicted(HistoryFault.WAL_DISK_FULL, what, at, seconds, "producer-1")


def _fill(path: Path) -> None:
    """Write ``path`` until the disk has no room left."""
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as file:
        try:
            while True:
                file.write(chunk)
        except OSError:
            pass
        small = b"\0" * 512
        try:
            while True:
                file.write(small)
        except OSError:
            pass


async def cluster_failover(run: WorkloadRun, rng: random.Random) -> Inflicted | None:
    """Fail the namespace's primary over to a replica that missed its last 1-2 s of writes."""
    if not isinstance(run.redis, LocalCluster):
        return None
    window = failover_window(rng)
    restart = rng.random() < 0.5
    at = run.elapsed()
    victim, replica, promoted = await fail_over(run.redis, run.namespace, window, restart=restart)
    what = (
        f"killed primary :{victim.port} after {window:.1f}s of writes its replica "
        f":{replica.port} missed; replica promoted {promoted:.1f}s later"
        + ("; old primary restarted as its replica" if restart else "; old primary left down")
    )
    return Inflicted(HistoryFault.CLUSTER_FAILOVER, what, at, window + promoted)


FAULTS: dict[HistoryFault, FaultFn] = {
    HistoryFault.PAUSE_HOLDER: pause_holder,
    HistoryFault.DROP_REPLY: drop_reply,
    HistoryFault.PARTITION: partition,
    HistoryFault.REDIS_ROLLBACK: redis_rollback,
    HistoryFault.WAL_DISK_FULL: wal_disk_full,
    HistoryFault.CLUSTER_FAILOVER: cluster_failover,
}
CLUSTER_ONLY = frozenset({HistoryFault.CLUSTER_FAILOVER})
STANDALONE_ONLY = frozenset({HistoryFault.REDIS_ROLLBACK})
