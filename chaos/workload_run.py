"""One run of the history workload: its processes, their relays, the producer's log disk.

:class:`WorkloadRun` is entered with ``async with`` and owns everything it starts: a
:class:`~chaos.proxy.Relay` to Redis and one to PostgreSQL for each process (so a fault can cut
one process off), the producer's write-ahead-log directory on a tmpfs of its own (so a fault
can fill it; when ``mount`` is refused, a plain directory, and that fault is skipped), and the
workload processes (:mod:`chaos.workload`): ``clients`` clients, one producer, ``consumers``
consumers. Each writes its history to ``<folder>/<process>.jsonl``. On a Redis Cluster
(``redis`` a :class:`~devservers.cluster.LocalCluster`) the processes reach Redis directly: a
cluster client is redirected to every node, which one relay cannot stand for (``redis`` of a
process is then None).

Every process connects, says ``ready``; :meth:`WorkloadRun.go` then gives them all the same
end time, and :meth:`WorkloadRun.wait` waits for them to finish (a process still running long
after the end is killed; the history keeps its whole lines).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import Process

from agentmem.chaos.proxy import Relay
from agentmem.devservers import EmbeddedPostgres, EmbeddedRedis
from agentmem.devservers.cluster import LocalCluster

logger = logging.getLogger(__name__)

WAL_DISK_BYTES = 16 * 1024 * 1024
_READY_WAIT = 60.0  # seconds for every process to connect (2 cores, many interpreters)
_END_GRACE = 20.0  # seconds a process may run past the end (a consumer draining, a slow exit)


@dataclass
class WorkloadProcess:
    """One process of the workload, the relays it reaches the servers through, its history."""

    name: str
    role: str
    history: Path
    redis: Relay | None  # None on a cluster: the process reaches its nodes directly
    postgres: Relay
    process: Process | None = None
    closed: bool = False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@dataclass
class WorkloadRun:
    """The processes of one seeded run against ``redis`` and ``postgres``."""

    redis: EmbeddedRedis | LocalCluster
    postgres: EmbeddedPostgres
    namespace: str
    seed: int
    folder: Path  # histories and logs
    scratch: Path  # the producer's log disk, copies of Redis's files
    seconds: float = 8.0
    clients: int = 4
    consumers: int = 2
    unsafe: str = ""  # "nofence", "nolock" (clients) or "steal" (consumers): tests only
    stall: bool = False  # consumers stall past the reclaim time now and then
    processes: list[WorkloadProcess] = field(default_factory=list)
    wal_dir: Path = field(init=False)
    wal_mounted: bool = field(init=False, default=False)
    started: float = field(init=False, default=0.0)  # time.monotonic() at go()
    _until: float = field(init=False, default=0.0)  # time.monotonic() when the work ends
    _stack: AsyncExitStack = field(init=False, default_factory=AsyncExitStack)

    async def __aenter__(self) -> Self:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.wal_dir = self.scratch / "wal"
        self.wal_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self._stack.__aenter__()
            self.wal_mounted = await anyio.to_thread.run_sync(_mount_tmpfs, self.wal_dir)
            if self.wal_mounted:
                self._stack.push_async_callback(anyio.to_thread.run_sync, _unmount, self.wal_dir)
            names = [(f"client-{i}", "client") for i in range(1, self.clients + 1)]
            names.append(("producer-1", "producer"))
            names += [(f"consumer-{i}", "consumer") for i in range(1, self.consumers + 1)]
            for index, (name, role) in enumerate(names):
                redis = None
                if isinstance(self.redis, EmbeddedRedis):
                    relay = Relay(self.redis.port)
                    redis = await self._stack.enter_async_context(relay.running())
                postgres = await self._stack.enter_async_context(
                    Relay(self.postgres.port).running()
                )
                proc = WorkloadProcess(name, role, self.folder / f"{name}.jsonl", redis, postgres)
                self.processes.append(proc)
                await self._start(proc, self.seed * 100 + index)
            self._stack.push_async_callback(self._stop_all)
            with anyio.fail_after(_READY_WAIT):
                for proc in self.processes:
                    await self._ready(proc)
        except BaseException:
            await self._stack.__aexit__(*sys.exc_info())
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self._stack.__aexit__(exc_type, exc, tb)

    def named(self, role: str) -> list[WorkloadProcess]:
        return [proc for proc in self.processes if proc.role == role]

    async def go(self) -> None:
        """Start the work in every process; it goes on until :meth:`end`."""
        self.started = time.monotonic()
        await self._tell("go")

    async def end(self, *, after: float = 0.0) -> None:
        """End the work ``seconds`` after :meth:`go`, and no sooner than ``after`` seconds from
        now (the work a run shows after its last fault, whatever the faults took)."""
        until = max(self.started + self.seconds, time.monotonic() + after)
        self._until = until
        await self._tell(f"end {int(until * 1e9)}")  # both clocks are CLOCK_MONOTONIC

    async def wait(self) -> None:
        """Wait for every process to finish its work (killing any that overstays)."""
        with anyio.move_on_after(self._until - time.monotonic() + _END_GRACE):
            for proc in self.processes:
                assert proc.process is not None
                await proc.process.wait()
        await self._stop_all()

    async def _tell(self, line: str) -> None:
        """Send ``line`` to every process still listening (a killed one is not)."""
        for proc in self.processes:
            assert proc.process is not None
            assert proc.process.stdin is not None
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await proc.process.stdin.send(f"{line}\n".encode())

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started else 0.0

    async def _start(self, proc: WorkloadProcess, seed: int) -> None:
        command = [
            sys.executable,
            "-m",
            "agentmem.chaos.workload",
            proc.role,
            "--process", proc.name,
            "--history", str(proc.history),
            "--redis-url", self._redis_url(proc),
            "--database-url", f"postgresql://postgres@127.0.0.1:{proc.postgres.port}/postgres",
            "--namespace", self.namespace,
            "--seed", str(seed),
            "--wal", str(self.wal_dir),
        ]  # fmt: skip
        if self.unsafe and proc.role in ("client", "consumer"):
            command += ["--unsafe", self.unsafe]
        if self.stall and proc.role == "consumer":
            command.append("--stall")
        with (self.folder / f"{proc.name}.log").open("ab") as log:
            proc.process = await anyio.open_process(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )

    def _redis_url(self, proc: WorkloadProcess) -> str:
        if proc.redis is None:
            assert isinstance(self.redis, LocalCluster)
            return self.redis.url
        return f"redis://127.0.0.1:{proc.redis.port}/0"

    async def _ready(self, proc: WorkloadProcess) -> None:
        assert proc.process is not None
        assert proc.process.stdout is not None
        said = b""
        while not said.endswith(b"\n"):
            try:
                said += await proc.process.stdout.receive()
            except anyio.EndOfStream:
                log = (self.folder / f"{proc.name}.log").read_text(errors="replace")[-1500:]
                msg = f"workload process {proc.name} exited before it was ready:\n{log}"
                raise RuntimeError(msg) from None
        if said.strip() != b"ready":
            msg = f"workload process {proc.name} said {said!r} instead of ready"
            raise RuntimeError(msg)

    async def _stop_all(self) -> None:
        for proc in self.processes:
            if proc.process is None or proc.closed:
                continue
            if proc.process.returncode is None:
                logger.warning("killing workload process %s, still running", proc.name)
                with contextlib.suppress(ProcessLookupError):
                    proc.process.send_signal(signal.SIGCONT)  # a paused one must die, too
                    proc.process.kill()
            await proc.process.aclose()
            proc.closed = True


def _mount_tmpfs(path: Path) -> bool:
    """Mount a small tmpfs at ``path``; False (a plain directory) if that is refused."""
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={WAL_DISK_BYTES}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        logger.warning("no tmpfs for the log disk: %s", result.stderr.decode(errors="replace"))
        return False
    return True


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=False)
