"""The history workload: processes that use the public memory API and record what they were told.

``python -m agentmem.chaos.workload ROLE --process NAME --history FILE ...`` is one process of a run
(:mod:`chaos.history_runs` starts them). Each connects with :func:`memory.open_memory`, prints
``ready``, waits for ``go`` on stdin, and works until the end the driver sends later as
``end <until>`` (``until`` in ``time.monotonic_ns()``): the driver sends it once its faults are
over, so that every run shows work after its last fault however slow the machine. It records
every operation with :class:`chaos.history.Recorder`, one op at a time (one process is one
single-threaded client, as in Jepsen). The roles:

- ``client``: mostly a fenced read-modify-write of document ``doc`` under lock ``res``: acquire
  (:meth:`RedisAgentMemory.lock`, or :meth:`acquire_lock` without renewal), read, write with
  the expected version and the lease's fencing token (a quarter of the writes with the token
  only), release (:meth:`release_lock`, whose answer is the release's outcome); else a plain
  read, or a short "call" under semaphore ``one`` (limit 1) or ``two`` (limit 2).
- ``producer``: publishes tasks ``task-<i>`` on stream ``tasks`` through a
  :class:`memory.DurableWriter` (its local log in ``--wal``), recorded as ``publish`` ops
  (not part of the checker's format: ok means the write is in the local log, ``sent`` whether
  it reached Redis already).
- ``consumer``: a worker of group ``workers`` on ``tasks``: reads one entry at a time (its
  ``deliver`` spans that read: invoked when the read was sent, so the checker knows the
  entry was handed out no earlier), then the effect (the document ``effect-<task>`` written
  with ``expected_version=0``, so a second effect of one task is refused), then the ack.
  After the end it goes on until the stream is drained.

A lease's ``valid_until`` is the holder's local deadline converted to ``time.monotonic_ns()``
by sampling both clocks when it is recorded. For :meth:`acquire_lock` and for semaphore
permits (which keep no local deadline) it is the request's send time plus the TTL less the
locks' drift margin. ``--unsafe nofence`` writes without expected version and without giving
the store the fencing token (which is still recorded, the one the writer held: the history of
a store that does not check fencing); ``--unsafe nolock`` records leases it never took;
``--stall`` makes consumers stall past the reclaim time after an effect now and then, so that
another worker reclaims the entry (the owned settling then refuses the stalled one's ack, and
it is recorded as ``fail``, ``lost``); ``--unsafe steal`` stalls likewise and settles as the
group did before entries were owned: a touch with a raw ``XCLAIM ... 0`` (min-idle 0: it
takes the entry back) and an ack with a raw ``XACK``, neither checking that the entry is
still its own. The three unsafe modes exist so that tests can see the checker catch them.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio

from agentmem.agents.lifetime import die_with_parent
from agentmem.chaos.history import Recorder
from agentmem.memory import (
    AgentEvent,
    ConflictError,
    ConsumerGroup,
    Delivery,
    DeliveryLostError,
    DurableWriter,
    Lease,
    LockTimeoutError,
    Memory,
    MemoryConfig,
    ServerUnavailableError,
    StaleFencingTokenError,
    StoreError,
    WriteAheadLog,
    _clock,
    open_memory,
)

RESOURCE = "res"  # the lock
DOCUMENT = "doc"  # the document its holders write
STREAM = "tasks"
GROUP = "workers"
SEMAPHORES = {"one": 1, "two": 2}

LOCK_TTL = 1.5  # seconds; a hold lasts well under a third of it, so leases are never renewed
SEM_TTL = 1.5
LOCK_WAIT = 4.0
_DRIFT = (0.01, 0.002)  # the locks' drift margin: share of the TTL, fixed seconds
RECLAIM_IDLE_MS = 1000
_STALL = 1.5  # seconds: past RECLAIM_IDLE_MS, a stalled consumer's entry is reclaimed
_STALL_SHARE = 0.2  # of the deliveries a consumer stalls on with --stall or --unsafe steal
_DRAIN_NS = 4_000_000_000  # consumers go on after the end until the stream is drained
_UNKNOWN = (ServerUnavailableError, StoreError)  # the operation may or may not have happened


def deadline_ns(deadline: float, clock: Callable[[], float]) -> int:
    """``deadline`` (seconds on ``clock``) on ``time.monotonic_ns()``'s clock."""
    return time.monotonic_ns() + int((deadline - clock()) * 1e9)


def local_deadline(sent_at: float, ttl: float) -> float:
    """What a holder may assume of a lease requested at ``sent_at`` (the locks' formula)."""
    return sent_at + ttl * (1 - _DRIFT[0]) - _DRIFT[1]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


@dataclass
class Worker:
    """One process of the workload: its memory, its recorder and its own random stream."""

    m: Memory
    rec: Recorder
    rng: random.Random
    name: str
    unsafe: str = ""
    stall: bool = False  # consumers stall past the reclaim time now and then
    _n: int = 0

    def next_id(self) -> str:
        self._n += 1
        return f"{self.name}.{self._n}"

    # -- the client -------------------------------------------------------------------------

    async def client(self, end: End) -> None:
        while not end.passed():
            draw = self.rng.random()
            if draw < 0.55:
                await self.locked_update()
            elif draw < 0.7:
                await self.read()
            else:
                await self.semaphore_call(self.rng.choice(sorted(SEMAPHORES)))
            await anyio.sleep(self.rng.uniform(0.0, 0.03))

    async def locked_update(self) -> None:
        lease = self.next_id()
        self.rec.record("invoke", "acquire", RESOURCE, {"lease": lease})
        if self.unsafe == "nolock":
            now = anyio.current_time()
            token = self._n
            until = deadline_ns(local_deadline(now, LOCK_TTL), anyio.current_time)
            self.rec.record(
                "ok", "acquire", RESOURCE, {"lease": lease, "token": token, "valid_until": until}
            )
            await self.update(lease, token)
            self.rec.record("invoke", "release", RESOURCE, {"lease": lease})
            self.rec.record("ok", "release", RESOURCE, {"lease": lease})
            return
        try:
            if self.rng.random() < 0.7:
                await self._held_update(lease)
            else:
                await self._bare_update(lease)
        except LockTimeoutError as exc:
            self.rec.record("fail", "acquire", RESOURCE, {"lease": lease, "error": _error(exc)})
        except _UNKNOWN as exc:
            self.rec.record("info", "acquire", RESOURCE, {"lease": lease, "error": _error(exc)})

    async def _held_update(self, lease: str) -> None:
        """Through :meth:`lock` (renewed while held): its own local deadline is recorded."""
        async with self.m.memory.lock(
            RESOURCE, self.name, ttl_seconds=LOCK_TTL, timeout=LOCK_WAIT
        ) as held:
            until = deadline_ns(held.valid_until, _clock.now)
            token = held.fencing_token
            self.rec.record(
                "ok", "acquire", RESOURCE, {"lease": lease, "token": token, "valid_until": until}
            )
            await self.update(lease, token)
            await self.release(lease, held.lease)

    async def _bare_update(self, lease: str) -> None:
        """Through :meth:`acquire_lock` / :meth:`release_lock`, polling while it is taken."""
        deadline = anyio.current_time() + LOCK_WAIT
        while True:
            got = await self.m.memory.acquire_lock(RESOURCE, self.name, ttl_seconds=LOCK_TTL)
            if got is not None:
                break
            if anyio.current_time() > deadline:
                msg = f"{RESOURCE} still held after {LOCK_WAIT} s"
                raise LockTimeoutError(msg)
            await anyio.sleep(self.rng.uniform(0.01, 0.05))
        until = deadline_ns(got.valid_until, _clock.now)
        self.rec.record(
            "ok",
            "acquire",
            RESOURCE,
            {"lease": lease, "token": got.fencing_token, "valid_until": until},
        )
        await self.update(lease, got.fencing_token)
        await self.release(lease, got)

    async def release(self, lease: str, granted: Lease) -> None:
        self.rec.record("invoke", "release", RESOURCE, {"lease": lease})
        try:
            released = await self.m.memory.release_lock(granted)
        except _UNKNOWN as exc:
            self.rec.record("info", "release", RESOURCE, {"lease": lease, "error": _error(exc)})
            return
        if released:
            self.rec.record("ok", "release", RESOURCE, {"lease": lease})
        else:
            self.rec.record("fail", "release", RESOURCE, {"lease": lease, "error": "lost"})

    async def update(self, lease: str, token: int | None) -> None:
        """Read the document, think a moment (a SIGSTOP may land here), write it back."""
        version = await self.read()
        await anyio.sleep(self.rng.uniform(0.02, 0.12))
        expected = None if version is None or self.rng.random() < 0.25 else version
        if self.unsafe == "nofence":  # a blind write that trusts the lock alone
            await self.write(lease, token, None, send_token=False)
        else:
            await self.write(lease, token, expected)

    async def read(self) -> int | None:
        """Read the document; its version (0 when absent), None if the read failed."""
        self.rec.record("invoke", "read", DOCUMENT)
        try:
            doc = await self.m.db.read(DOCUMENT)
        except _UNKNOWN as exc:
            self.rec.record("fail", "read", DOCUMENT, {"error": _error(exc)})
            return None
        version = 0 if doc is None else doc.version
        value = None if doc is None else doc.value
        self.rec.record("ok", "read", DOCUMENT, {"version": version, "value": value})
        return version

    async def write(
        self, lease: str, token: int | None, expected: int | None, *, send_token: bool = True
    ) -> None:
        """Write the document; ``send_token=False``: the token is recorded (the holder's), not
        given to the store, as if the store did not check fencing."""
        value = self.next_id()
        self.rec.record(
            "invoke",
            "write",
            DOCUMENT,
            {"value": value, "expected": expected, "token": token, "lease": lease},
        )
        try:
            doc = await self.m.db.write(
                DOCUMENT, value, self.name, expected, fencing_token=token if send_token else None
            )
        except StaleFencingTokenError:
            self.rec.record("fail", "write", DOCUMENT, {"error": "stale"})
        except ConflictError:
            self.rec.record("fail", "write", DOCUMENT, {"error": "conflict"})
        except _UNKNOWN as exc:
            self.rec.record("info", "write", DOCUMENT, {"error": _error(exc)})
        else:
            self.rec.record("ok", "write", DOCUMENT, {"version": doc.version})

    async def semaphore_call(self, name: str) -> None:
        limit = SEMAPHORES[name]
        semaphore = self.m.semaphore(name, limit, ttl_seconds=SEM_TTL)
        permit_id = self.next_id()
        value = {"permit": permit_id, "limit": limit}
        self.rec.record("invoke", "sem_acquire", name, value)
        deadline = anyio.current_time() + LOCK_WAIT
        try:
            while True:
                sent_at = anyio.current_time()
                permit = await semaphore.try_acquire(self.name)
                if permit is not None:
                    break
                if anyio.current_time() > deadline:
                    self.rec.record("fail", "sem_acquire", name, {**value, "error": "timeout"})
                    return
                await anyio.sleep(self.rng.uniform(0.01, 0.05))
        except _UNKNOWN as exc:
            self.rec.record("info", "sem_acquire", name, {**value, "error": _error(exc)})
            return
        until = deadline_ns(local_deadline(sent_at, SEM_TTL), anyio.current_time)
        self.rec.record("ok", "sem_acquire", name, {**value, "valid_until": until})
        await anyio.sleep(self.rng.uniform(0.02, 0.1))  # the call the semaphore caps
        self.rec.record("invoke", "sem_release", name, value)
        try:
            released = await semaphore.release(permit)
        except _UNKNOWN as exc:
            self.rec.record("info", "sem_release", name, {**value, "error": _error(exc)})
            return
        if released:
            self.rec.record("ok", "sem_release", name, value)
        else:
            self.rec.record("fail", "sem_release", name, {**value, "error": "lost"})

    # -- the handoffs -----------------------------------------------------------------------

    async def producer(self, end: End, wal_dir: Path, tasks: int) -> None:
        events = self.m.events(STREAM)
        async with WriteAheadLog(wal_dir / f"{self.name}.wal") as wal:
            writer = DurableWriter(self.m.memory, events, wal)
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer.run)
                for i in range(tasks):
                    if end.passed():
                        break
                    await self.publish(writer, f"task-{i}")
                    await anyio.sleep(self.rng.uniform(0.01, 0.05))
                with anyio.move_on_after(3.0):  # send what the log still holds
                    while await writer.flush():  # noqa: ASYNC110 - flush reports, no event
                        await anyio.sleep(0.2)
                tg.cancel_scope.cancel()

    async def publish(self, writer: DurableWriter, task: str) -> None:
        self.rec.record("invoke", "publish", task, {"task": task})
        event = AgentEvent(event_type="task", agent_id=self.name, payload={"task": task})
        try:
            sent = await writer.publish(event, idempotency_key=task)
        except Exception as exc:  # whatever the log's disk says is recorded
            self.rec.record("fail", "publish", task, {"task": task, "error": _error(exc)})
        else:
            self.rec.record("ok", "publish", task, {"task": task, "sent": sent})

    async def consumer(self, end: End) -> None:
        group = self.m.events(STREAM, max_deliveries=50, reclaim_idle_ms=RECLAIM_IDLE_MS).group(
            GROUP, self.name
        )
        await group.ensure()
        idle = 0  # empty reads in a row after the end: the stream is drained
        while not end.passed(after=_DRAIN_NS) and idle < 3:
            sent = time.monotonic_ns()
            try:
                deliveries = await group.read(count=1, block_ms=200)
            except _UNKNOWN:
                await anyio.sleep(0.1)
                continue
            idle = idle + 1 if not deliveries and end.passed() else 0
            for delivery in deliveries:  # one: its delivery spans the read that returned it
                task = str(delivery.event.payload.get("task"))
                entry = {"entry": delivery.entry_id}
                self.rec.record("invoke", "deliver", task, entry, at=sent)
                self.rec.record("ok", "deliver", task, entry)
                if not await self.effect(task, entry):
                    continue  # unknown: left pending, to be delivered again
                await anyio.sleep(self.rng.uniform(0.0, 0.05))
                if (self.stall or self.unsafe == "steal") and self.rng.random() < _STALL_SHARE:
                    await anyio.sleep(_STALL)  # another worker reclaims the entry meanwhile
                if self.unsafe == "steal":
                    await self.stolen_ack(group, delivery, task, entry)
                    continue
                self.rec.record("invoke", "ack", task, entry)
                try:
                    await group.ack(delivery)
                except DeliveryLostError:
                    self.rec.record("fail", "ack", task, {**entry, "error": "lost"})
                except _UNKNOWN as exc:
                    self.rec.record("info", "ack", task, {**entry, "error": _error(exc)})
                else:
                    self.rec.record("ok", "ack", task, entry)

    async def stolen_ack(
        self, group: ConsumerGroup, delivery: Delivery, task: str, entry: dict[str, str]
    ) -> None:
        """The unsafe settling of ``--unsafe steal``: a raw touch and ack."""
        self.rec.record("invoke", "ack", task, entry)
        client, key, name = group.client, group.stream_key, group.name
        try:
            await client.xclaim(key, name, group.consumer, 0, [delivery.entry_id], justid=True)
            await client.xack(key, name, delivery.entry_id)
        except Exception as exc:  # raw driver errors: the ack's outcome is unknown
            self.rec.record("info", "ack", task, {**entry, "error": _error(exc)})
        else:
            self.rec.record("ok", "ack", task, entry)

    async def effect(self, task: str, entry: dict[str, str]) -> bool:
        """Apply the task's effect at most once; False when its outcome is unknown."""
        self.rec.record("invoke", "effect", task, entry)
        try:
            await self.m.db.write(f"effect-{task}", entry, self.name, expected_version=0)
        except ConflictError:
            self.rec.record("fail", "effect", task, {**entry, "error": "already done"})
        except _UNKNOWN as exc:
            self.rec.record("info", "effect", task, {**entry, "error": _error(exc)})
            return False
        else:
            self.rec.record("ok", "effect", task, entry)
        return True


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agentmem.chaos.workload")
    parser.add_argument("role", choices=("client", "producer", "consumer"))
    parser.add_argument("--process", required=True, help="this process's name in the history")
    parser.add_argument("--history", type=Path, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wal", type=Path, help="the producer's log directory")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks the producer publishes")
    parser.add_argument("--unsafe", choices=("", "nofence", "nolock", "steal"), default="")
    parser.add_argument(
        "--stall", action="store_true", help="consumers stall past the reclaim time now and then"
    )
    return parser.parse_args(argv)


class End:
    """When the work ends: unknown (work on) until the driver's ``end <until>`` line arrives."""

    def __init__(self) -> None:
        self.until: int | None = None  # time.monotonic_ns(); set once, by the reading thread

    def passed(self, after: int = 0) -> bool:
        until = self.until
        return until is not None and time.monotonic_ns() >= until + after

    def follow(self, lines: TextIO) -> None:
        """Read the driver's lines (a daemon thread: it never holds up the exit)."""
        for line in lines:
            word, _, value = line.partition(" ")
            if word == "end":
                self.until = int(value)
                return


async def run(args: argparse.Namespace) -> None:
    die_with_parent(signal.SIGKILL)()  # even paused (SIGSTOP) by a driver that died
    config = MemoryConfig(
        redis_url=args.redis_url,
        database_url=args.database_url,
        connect_timeout=1.0,
        command_timeout=1.0,
        pool_max_size=2,
        client_name="chaos-workload",
    )
    async with open_memory(config, args.namespace, migrate=False, wait=10.0) as m:
        rec = Recorder(args.history, args.process)
        worker = Worker(m, rec, random.Random(args.seed), args.process, args.unsafe, args.stall)
        print("ready", flush=True)  # noqa: T201 - the driver's handshake
        await anyio.to_thread.run_sync(sys.stdin.readline)  # go
        end = End()
        threading.Thread(target=end.follow, args=(sys.stdin,), daemon=True).start()
        try:
            if args.role == "client":
                await worker.client(end)
            elif args.role == "producer":
                await worker.producer(end, args.wal, args.tasks)
            else:
                await worker.consumer(end)
        finally:
            rec.close()


def main(argv: Sequence[str] | None = None) -> int:
    anyio.run(run, parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
