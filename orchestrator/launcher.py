"""How the supervisor starts agent processes: forked from a zygote that has imported the agents.

An :class:`AgentLauncher` owns one zygote (see :mod:`agents.zygote`); each agent is a fork of
it, ready once it has connected (about 0.15 s) instead of after the 0.6 s (idle) to several
seconds (nine at once on two cores) that a new interpreter spends importing. The zygote comes
from one of two places:

- :meth:`AgentLauncher.fork`: a fork of this process, for an orchestrator that has imported
  the agent code already (``agentmem run`` does, before it starts servers, threads or an event
  loop); nothing is imported twice.
- :meth:`AgentLauncher.start`: ``python -m agents.zygote``, a new interpreter that imports the
  agent code itself; for a caller that already runs an event loop or threads
  (:func:`orchestrator.run.run_report` as a library call, the tests).

:meth:`AgentLauncher.launch` is async and returns an :class:`AgentChild`, which the supervisor
waits for, signals and kills like a subprocess. The zygote is a child of this process and
stops when :meth:`AgentLauncher.close` closes its socket, or when this process dies; its agents
get SIGTERM when it stops.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import anyio

from agents import zygote
from agents.roles import Role
from agents.zygote import INT

_CLOSE_WAIT_SECONDS = 5.0


class LauncherError(ChildProcessError):
    """The zygote that forks agent processes is gone or could not fork.

    An ``OSError`` (not the memory layer's error base, which this module avoids importing so
    that the zygote starts before the orchestrator's own heavy imports): the CLI shows it as
    one line all the same."""


class AgentChild:
    """An agent process forked by the zygote: its pid, and its exit code once it exited."""

    def __init__(self, pid: int, report: socket.socket) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._report = report

    async def wait(self) -> int:
        """Wait until the process has exited; its exit code (negative: killed by a signal)."""
        if self.returncode is None:
            code = await _read_int(self._report)
            self._report.close()
            # None: the zygote died first; its agents got SIGTERM from the kernel
            self.returncode = -signal.SIGTERM if code is None else code
        return self.returncode

    def send_signal(self, sig: signal.Signals, /) -> None:
        """Send ``sig`` unless the process has been reaped already (its pid may be reused)."""
        if self.returncode is None:
            with suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class AgentLauncher:
    """Forks agent processes from one zygote; ``with AgentLauncher.start() as launcher:``."""

    def __init__(
        self, pid: int, control: socket.socket, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        self.pid = pid  # the zygote's
        self.process = process  # when it was spawned rather than forked
        self._control = control
        self._sending = anyio.Lock()
        self._exited: int | None = None  # the forked zygote's exit code, once reaped

    @classmethod
    @contextmanager
    def fork(cls) -> Iterator[AgentLauncher]:
        """The zygote as a fork of this process, which imports the agent code first (most of it
        an orchestrator has imported already): no second interpreter imports it all again.
        This process must have no thread and no event loop yet (checked: it is a
        :class:`LauncherError` otherwise); :meth:`start` has no such condition."""
        importlib.import_module("agents.__main__")
        if threading.active_count() > 1 or _loop_running():
            msg = "AgentLauncher.fork() needs a process without threads or a running event loop"
            raise LauncherError(msg)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours:
            for stream in (sys.stdout, sys.stderr):  # or the zygote's agents would repeat it
                stream.flush()
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:  # the zygote
                try:
                    ours.close()
                    zygote.become_forked_zygote(parent)
                    zygote.serve(theirs)
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(1)
            theirs.close()
            ours.setblocking(False)
            launcher = cls(pid, ours)
            try:
                yield launcher
            finally:
                launcher.close()

    @classmethod
    @contextmanager
    def start(cls, env: Mapping[str, str] | None = None) -> Iterator[AgentLauncher]:
        """Start the zygote now (it imports the agent code while the caller goes on); stop it
        on leaving. Call it with no event loop running, or from one: it does not block."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours:
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "agents.zygote", "--parent", str(os.getpid())],
                    stdin=theirs.fileno(),
                    stdout=subprocess.DEVNULL,
                    env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
                )
            finally:
                theirs.close()
            ours.setblocking(False)
            launcher = cls(process.pid, ours, process)
            try:
                yield launcher
            finally:
                launcher.close()

    def close(self) -> None:
        """Stop the zygote: end of file on its socket, then SIGKILL if it lingers."""
        self._control.close()
        if self.process is not None:
            try:
                self.process.wait(_CLOSE_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            return
        deadline = time.monotonic() + _CLOSE_WAIT_SECONDS
        while self.exit_code() is None:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                self._exited = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
                return
            time.sleep(0.005)

    def exit_code(self) -> int | None:
        """The zygote's exit code if it has exited (it then starts no agent), else None."""
        if self.process is not None:
            return self.process.poll()
        if self._exited is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            self._exited = None if pid == 0 else os.waitstatus_to_exitcode(status)
        return self._exited

    async def launch(
        self, role: Role, run_id: str, instance: int, env: Mapping[str, str], log_path: Path
    ) -> AgentChild:
        """Fork one agent of ``run_id`` with environment ``env``, its output appended to
        ``log_path``; returns once it runs."""
        request = json.dumps(
            {
                "role": role.value,
                "run_id": run_id,
                "instance": instance,
                "env": dict(env),
                "log": str(log_path),
            }
        ).encode()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        try:
            with theirs:
                async with self._sending:
                    await self._send(request, theirs)
            pid = await _read_int(ours)
        except BaseException:
            ours.close()
            raise
        if pid is None or pid < 0:
            ours.close()
            code = self.exit_code()
            why = "could not fork" if code is None else f"exited with code {code}"
            msg = f"cannot start agent {role}-{instance}: the agent zygote {why}"
            raise LauncherError(msg)
        return AgentChild(pid, ours)

    async def _send(self, request: bytes, report: socket.socket) -> None:
        while True:
            try:
                socket.send_fds(self._control, [request], [report.fileno()])
            except BlockingIOError:
                await anyio.wait_writable(self._control)
            except OSError as exc:
                msg = f"the agent zygote is gone ({exc}); the run cannot start agents"
                raise LauncherError(msg) from exc
            else:
                return


async def _read_int(sock: socket.socket) -> int | None:
    """One 8-byte integer from ``sock``; None if it closes first."""
    data = b""
    while len(data) < INT.size:
        await anyio.wait_readable(sock)
        try:
            chunk = sock.recv(INT.size - len(data))
        except BlockingIOError:
            continue
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    value: int = INT.unpack(data)[0]
    return value


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
