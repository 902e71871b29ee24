"""Local servers shared by every command of a checkout: the first starts them, the last stops them.

``agentmem serve``, ``agentmem run``, ``agentmem runs`` and a library user's script all use
the same data directory (``.agentmem/servers``). Two PostgreSQL servers cannot share one
cluster directory, so the servers are started once, by a *keeper* process
(:mod:`devservers.keeper`) that belongs to no command, and every command attaches to them:

- ``shared.lock``: a file lock (``flock``) held while a command attaches, while the keeper is
  starting, and while the keeper stops. Nobody reads the state while another changes it.
- ``shared.json``: the keeper's pid and the URLs and pids of the servers it started.
- ``users/``: one lease file per user, naming its pid and the pid's start time (so that a pid
  reused by another process is not mistaken for the user). ``users/pinned`` is the lease of
  ``agentmem servers up``, until ``agentmem servers down``.

A user takes the lock, writes its lease, then reads ``shared.json``: if its keeper is alive it
uses those URLs, otherwise it starts a keeper and waits for the file (a keeper that cannot start
the servers leaves its one-line reason in ``shared.error`` and exits). On exit the user removes
its lease. The keeper looks at the leases a few times a second: a lease whose process is gone
(a command killed with SIGKILL) is removed, and when none is left the keeper takes the lock,
looks again, removes ``shared.json`` and stops the servers before it releases the lock, so a
command arriving meanwhile waits and then starts a new keeper instead of attaching to servers
that are stopping. The servers die with their keeper (``PR_SET_PDEATHSIG``), so a keeper killed
with SIGKILL leaves a ``shared.json`` whose pid is dead: the next user waits for the old servers
to be gone, then starts anew.

The keeper runs in a session of its own: Ctrl-C in the terminal of the command that started it
stops that command, not the servers another command is using.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from agentmem.devservers.errors import ServerStartError
from agentmem.devservers.servers import ServerUrls

__all__ = [
    "SharedServers",
    "SharedState",
    "pin",
    "read_state",
    "shared_servers",
    "stop_shared",
    "unpin",
    "users",
]

STATE = "shared.json"
ERROR = "shared.error"
LOCK = "shared.lock"
USERS = "users"
PINNED = "pinned"
START_TIMEOUT = 60.0

# Keepers this process started: it is their parent until it exits, and reaps them if they end
# first. Kept here so that a running keeper's Popen is never collected (no ResourceWarning).
_keepers: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True, slots=True)
class SharedState:
    """What ``shared.json`` holds: who keeps the servers, and where they are."""

    keeper_pid: int
    keeper_started: str  # the keeper pid's start time (see process_start)
    redis_url: str
    database_url: str
    server_pids: list[int]
    appendfsync: str

    @property
    def urls(self) -> ServerUrls:
        return ServerUrls(redis_url=self.redis_url, database_url=self.database_url)


@dataclass(frozen=True, slots=True)
class SharedServers:
    """The shared servers one user attached to, and whether this user started them."""

    urls: ServerUrls
    state: SharedState
    started: bool


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), or None if it is not alive.

    A zombie counts as gone. Comparing start times tells a process from a later one that
    reused its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in {"Z", "X"}:
        return None
    return fields[19]


def alive(pid: int, started: str) -> bool:
    return process_start(pid) == started


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold ``shared.lock`` of ``directory`` (waiting for it)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_state(directory: Path) -> SharedState | None:
    """The state in ``shared.json`` if its keeper is alive, else None (a stale file is left)."""
    try:
        data = json.loads((directory / STATE).read_text())
        state = SharedState(**data)
    except (OSError, ValueError, TypeError):
        return None
    return state if alive(state.keeper_pid, state.keeper_started) else None


def write_state(directory: Path, state: SharedState) -> None:
    tmp = directory / f"{STATE}.tmp"
    tmp.write_text(json.dumps(asdict(state)))
    tmp.replace(directory / STATE)


def users(directory: Path) -> list[str]:
    """The live users' leases (``pinned`` or a pid); the leases of dead processes are removed."""
    found = []
    folder = directory / USERS
    for lease in sorted(folder.iterdir()) if folder.is_dir() else []:
        if lease.name == PINNED:
            found.append(PINNED)
            continue
        try:
            pid, started = lease.read_text().split()
        except (OSError, ValueError):
            continue  # being written; its writer holds the lock or is about to
        if alive(int(pid), started):
            found.append(pid)
        else:
            lease.unlink(missing_ok=True)
    return found


def _lease(directory: Path) -> Path:
    folder = directory / USERS
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    started = process_start(pid)
    path = folder / f"{pid}-{secrets.token_hex(4)}"
    path.write_text(f"{pid} {started}")
    return path


def _forget_stale(directory: Path) -> None:
    """Remove a dead keeper's state once its servers are gone (they die with it)."""
    try:
        data = json.loads((directory / STATE).read_text())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 15
    for pid in data.get("server_pids", []):
        while process_start(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    (directory / STATE).unlink(missing_ok=True)


def _start_keeper(directory: Path, appendfsync: str) -> SharedState:
    """Start a keeper for ``directory`` and wait until its servers are ready (lock held)."""
    _forget_stale(directory)
    (directory / ERROR).unlink(missing_ok=True)
    with (directory / "keeper.log").open("ab") as log:
        keeper = subprocess.Popen(
            [sys.executable, "-m", "agentmem.devservers.keeper", str(directory), appendfsync],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in this terminal does not reach it
        )
    _keepers[:] = [k for k in _keepers if k.poll() is None]
    _keepers.append(keeper)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        state = read_state(directory)
        if state is not None and state.keeper_pid == keeper.pid:
            return state
        if keeper.poll() is not None:
            try:
                reason = (directory / ERROR).read_text().strip()
            except OSError:
                reason = f"the server keeper exited with code {keeper.returncode}"
            msg = f"{reason} (log: {directory / 'keeper.log'})"
            raise ServerStartError(msg)
        time.sleep(0.05)
    keeper.send_signal(signal.SIGTERM)
    msg = (
        f"the local servers did not start within {START_TIMEOUT:.0f} s "
        f"(log: {directory / 'keeper.log'})"
    )
    raise ServerStartError(msg)


@contextlib.contextmanager
def shared_servers(
    directory: Path,
    *,
    appendfsync: str = "everysec",
    on_start: Callable[[], object] | None = None,
) -> Iterator[SharedServers]:
    """Attach to the local servers of ``directory``, starting them if nobody runs them
    (``on_start`` is called first, to tell a person why they wait).

    The servers keep running while any user is attached (or they are pinned, see :func:`pin`)
    and stop soon after the last user leaves. ``appendfsync`` applies when this call starts
    them; servers already running keep theirs (:attr:`SharedState.appendfsync` says which).
    """
    directory = directory.resolve()
    with locked(directory):
        lease = _lease(directory)
        try:
            state = read_state(directory)
            started = state is None
            if state is None:
                if on_start is not None:
                    on_start()
                state = _start_keeper(directory, appendfsync)
        except BaseException:
            lease.unlink(missing_ok=True)
            raise
    try:
        yield SharedServers(urls=state.urls, state=state, started=started)
    finally:
        lease.unlink(missing_ok=True)


def pin(directory: Path, *, appendfsync: str = "everysec") -> SharedServers:
    """Start the servers of ``directory`` if needed and keep them up until :func:`unpin`."""
    with shared_servers(directory, appendfsync=appendfsync) as shared:
        (directory.resolve() / USERS / PINNED).write_text(PINNED)
        return shared


def unpin(directory: Path) -> list[str]:
    """Remove the pin; the other users still attached (their pids), after which they stop."""
    directory = directory.resolve()
    with locked(directory):
        (directory / USERS / PINNED).unlink(missing_ok=True)
        return users(directory)


def stop_shared(directory: Path, timeout: float = 30.0) -> bool:
    """Stop the keeper of ``directory`` and its servers now; False if none was running."""
    directory = directory.resolve()
    state = read_state(directory)
    if state is None:
        return False
    os.kill(state.keeper_pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(state.keeper_pid, state.keeper_started) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True
