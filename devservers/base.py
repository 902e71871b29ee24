"""The base of every local server: a process owned by an object, started, waited for, stopped.

Each server runs in a data directory of its own, on a free port, and is stopped when its owner
exits, is interrupted, or dies: the kernel sends the server a signal when the process that
started it ends (``PR_SET_PDEATHSIG``), so no server outlives its owner.
"""

from __future__ import annotations

import importlib.util
import logging
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from agentmem.agents.lifetime import die_with_parent
from agentmem.devservers.errors import ServerStartError
from agentmem.devservers.ports import free_port

logger = logging.getLogger(__name__)


def package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    msg = f"{what} did not become ready within {timeout:.0f} s: {log_reason(log)}"
    raise ServerStartError(msg)


_REASON_MARKS = ("FATAL", "PANIC", "ERROR", "error", "Error", "# ")


def log_reason(log: Path) -> str:
    """One line from a server's log saying why it stopped: the last line that reads like an
    error (PostgreSQL's ``FATAL:``, Redis's ``# ...``), else the last line; then the log's path.
    """
    try:
        lines = [" ".join(line.split()) for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return f"no log at {log}"
    lines = [line for line in lines if line]
    marked = [line for line in lines if any(mark in line for mark in _REASON_MARKS)]
    reason = (marked or lines or ["the log is empty"])[-1]
    if len(reason) > 300:
        reason = f"{reason[:299]}…"
    return f"{reason} (log: {log})"


@dataclass(frozen=True, slots=True)
class RunAs:
    """The user a server process runs as; all None means this process's own user."""

    uid: int | None = None
    gid: int | None = None
    extra_groups: list[int] | None = None


class StartStop:
    """``with`` for a local server or cluster: ``start()`` on entry, ``stop()`` on exit."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_together(servers: Sequence[Server], timeout: float = 30.0) -> None:
    """Start ``servers`` at once and wait for all: the start takes the slowest one's time, not
    the sum. If one fails, those started are stopped."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready(timeout)
    except BaseException:
        stop_together(servers)
        raise


def stop_together(servers: Sequence[Server]) -> None:
    """Ask every server in ``servers`` to stop, then wait for each."""
    stopping = [(server, server.ask_to_stop()) for server in servers]
    for server, proc in stopping:
        server.wait_stopped(proc)


class Server(StartStop):
    """A server process owned by this object: started, waited for, stopped."""

    name = "server"
    stop_signal = signal.SIGTERM
    crash_signal = signal.SIGKILL

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log_path = data_dir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._launched = 0.0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Create what the server needs before its first start."""

    def _run_as(self) -> RunAs:
        return RunAs()

    def start(self, timeout: float = 30.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the server process and return at once (:meth:`wait_ready` waits for it)."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare()
        self._launched = time.monotonic()
        run_as = self._run_as()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(self.stop_signal),  # noqa: PLW1509
                user=run_as.uid,
                group=run_as.gid,
                extra_groups=run_as.extra_groups,
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the launched server answers; stop it and raise if it does not in time."""
        what = f"{self.name} on port {self.port}"
        try:
            wait_until(self._ready_or_dead, timeout, what, self.log_path)
        except BaseException:
            self.stop()
            raise
        logger.info(
            "%s ready on 127.0.0.1:%d in %.2fs",
            self.name,
            self.port,
            time.monotonic() - self._launched,
        )

    def _ready_or_dead(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            reason = log_reason(self.log_path)
            msg = f"{self.name} exited with code {self._proc.returncode}: {reason}"
            raise ServerStartError(msg)
        return self._ready()

    def stop(self, timeout: float = 15.0) -> None:
        self.wait_stopped(self.ask_to_stop(), timeout)

    def ask_to_stop(self) -> subprocess.Popen[bytes] | None:
        """Send the stop signal and return at once; the process to pass to :meth:`wait_stopped`."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return None
        proc.send_signal(self.stop_signal)
        return proc

    def wait_stopped(self, proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
        """Wait for a server asked to stop; SIGKILL it after ``timeout`` seconds."""
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def crash(self) -> None:
        """Stop the server abruptly, as a crash would: no shutdown work, clients cut off."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(self.crash_signal)
            proc.wait()

    def kill(self) -> None:
        """The same as :meth:`crash`."""
        self.crash()
