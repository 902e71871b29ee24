"""The faults chaos injects into a run, and how each one is done.

- ``agent kill``: SIGKILL of one of the run's agent processes (the supervisor restarts it).
- ``redis stop`` / ``postgres stop``: a graceful stop (SIGTERM / fast shutdown), down 1-3 s.
- ``redis crash``: SIGKILL of redis-server, down 1-3 s; it restarts on its append-only file.
- ``postgres crash``: an immediate stop (SIGQUIT to the postmaster: no checkpoint, clients cut
  off), down 1-3 s; it restarts with crash recovery from its WAL.

Agent processes are found by their command line, ``python -m agentmem.agents <role> --run-id R
--instance N``, parsed by option name (not by position), so other interpreter flags or a
different option order do not confuse it. An agent forked by the orchestrator's zygote shows
the same command line as its process title, one shell-quoted string (``setproctitle``).
"""

from __future__ import annotations

import argparse
import random
import shlex
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import anyio
import psutil

from agentmem.devservers import EmbeddedPostgres, EmbeddedRedis


class Fault(StrEnum):
    AGENT_KILL = "agent kill"
    REDIS_STOP = "redis stop"
    REDIS_CRASH = "redis crash"
    POSTGRES_STOP = "postgres stop"
    POSTGRES_CRASH = "postgres crash"


# What a draw picks from: agent kills twice as often as each kind of server fault.
FAULTS = (
    Fault.AGENT_KILL,
    Fault.AGENT_KILL,
    Fault.REDIS_STOP,
    Fault.REDIS_CRASH,
    Fault.POSTGRES_STOP,
    Fault.POSTGRES_CRASH,
)


@dataclass
class Injection:
    fault: Fault
    target: str
    at: float  # seconds after the run started
    down: float = 0.0
    ended: datetime | None = None
    recovered_after: float | None = None  # first event after the injection ended

    def describe(self) -> str:
        if self.fault is Fault.AGENT_KILL:
            what = f"kill {self.target}"
        else:
            how = "crashed" if self.fault in (Fault.REDIS_CRASH, Fault.POSTGRES_CRASH) else "down"
            what = f"{self.target} {how} {self.down:.1f}s"
        recovery = (
            f", next event +{self.recovered_after:.1f}s" if self.recovered_after is not None else ""
        )
        return f"{what} @{self.at:.1f}s{recovery}"


@dataclass(frozen=True, slots=True)
class AgentProcess:
    """A live agent process and who it is, from its command line."""

    role: str
    run_id: str
    instance: int
    process: psutil.Process

    @property
    def name(self) -> str:
        return f"{self.role}-{self.instance}"


def _agent_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("role", nargs="?")
    parser.add_argument("--run-id")
    parser.add_argument("--instance", type=int, default=1)
    return parser


_AGENT_ARGS = _agent_parser()


def agent_identity(cmdline: list[str]) -> tuple[str, str, int] | None:
    """``(role, run id, instance)`` of a ``python -m agentmem.agents ...`` command line, else
    None."""
    words = [word for word in cmdline if word]
    if len(words) == 1:  # a process title set in one piece: the command line, shell-quoted
        try:
            words = shlex.split(words[0])
        except ValueError:
            return None
    cmdline = words
    for i in range(len(cmdline) - 1):
        if cmdline[i] == "-m" and cmdline[i + 1] == "agentmem.agents":
            rest = cmdline[i + 2 :]
            break
    else:
        return None
    try:
        args, _ = _AGENT_ARGS.parse_known_args(rest)
    except argparse.ArgumentError:
        return None
    if not args.role or not args.run_id:
        return None
    return args.role, args.run_id, args.instance


def agent_processes(run_id: str) -> list[AgentProcess]:
    """The live agent processes of ``run_id``, by pid."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        identity = agent_identity(proc.info["cmdline"] or [])
        if (
            identity is not None
            and identity[1] == run_id
            and proc.info["status"] != psutil.STATUS_ZOMBIE
        ):
            found.append(AgentProcess(identity[0], identity[1], identity[2], proc))
    return sorted(found, key=lambda a: a.process.pid)


async def inject(
    rng: random.Random, redis: EmbeddedRedis, postgres: EmbeddedPostgres, run_id: str, at: float
) -> Injection | None:
    """Draw a fault from ``rng`` and inflict it; None if there was nothing to hit."""
    fault = rng.choice(FAULTS)
    if fault is Fault.AGENT_KILL:
        agents = agent_processes(run_id)
        if not agents:
            return None
        victim = rng.choice(agents)
        try:
            victim.process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            return None
        return Injection(fault, victim.name, at, ended=datetime.now(UTC))
    server = redis if fault in (Fault.REDIS_STOP, Fault.REDIS_CRASH) else postgres
    down = rng.uniform(1.0, 3.0)
    crash = fault in (Fault.REDIS_CRASH, Fault.POSTGRES_CRASH)
    await anyio.to_thread.run_sync(server.crash if crash else server.stop)
    await anyio.sleep(down)
    await anyio.to_thread.run_sync(server.start)
    target = "Redis" if server is redis else "PostgreSQL"
    return Injection(fault, target, at, down, datetime.now(UTC))
