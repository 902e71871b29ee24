"""How the supervisor starts agent processes: forked from a zygote that has imported the agents.

An :class:`AgentLauncher` owns one zygote (see :mod:`agents.zygote`); each agent is a fork of
it, ready once it has connected instead of after the imports a new interpreter spends most of
its start on (and which nine agents starting at once share the CPUs for; docs/performance.md,
"Start-up", has the figures). The zygote comes from one of two places:

- :meth:`AgentLauncher.fork`: a fork of this process, for an orchestrator that has imported
  the agent code already (``agentmem run`` does, before it starts servers, threads or an event
  loop); nothing is imported twice.
- :meth:`AgentLauncher.start`: ``python -m agents.zygote``, a new interpreter that imports the
  agent code itself; for a caller that already runs an event loop or threads
  (:func:`orchestrator.lifecycle.run_report` as a library call, the tests).

:meth:`AgentLauncher.launch` is async and returns an :class:`AgentChild`, which the supervisor
waits for, signals and kills like a subprocess. The agent runs with the
:class:`~agents.settings.Settings` it is given, sent whole in its launch request
(:class:`agents.zygote.LaunchRequest`), not with the zygote's environment. The zygote is a
child of this process and stops when :meth:`AgentLauncher.close` closes its socket, or when
this process dies.

The zygote is not a single point of failure. Its agents do not die with it: they die with
this process (each waits on the *life pipe*, whose write end only this process holds: closed
by :meth:`AgentLauncher.close` or by this process's death, however it dies; see
:mod:`agents.zygote`). This process makes itself a child subreaper
(``PR_SET_CHILD_SUBREAPER``), so the agents of a zygote that died become its own children:
:meth:`AgentChild.wait` then follows each through a pidfd opened when it was forked, and
reaps it for its exit code, and :meth:`AgentChild.send_signal` signals it through that pidfd
(never a reused pid). A zygote found dead when an agent is to be started is replaced by a new
interpreter's (``python -m agents.zygote``: this process may run threads and an event loop by
then, so it is not forked again), and the agent is started from that one.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import logging
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
from typing import TYPE_CHECKING

import anyio

from agentmem.agents import zygote
from agentmem.agents.zygote import INT, LaunchRequest
from agentmem.protocol.roles import Role

if TYPE_CHECKING:  # not imported at run time: the zygote starts before the heavy imports
    from agentmem.agents.settings import Settings

logger = logging.getLogger(__name__)

_CLOSE_WAIT_SECONDS = 5.0
_PR_SET_CHILD_SUBREAPER = 36
_ADOPT_WAIT_SECONDS = 5.0  # how long an orphaned agent that exited may take to be re-parented


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
        self._report: socket.socket | None = report
        try:  # the agent, followed even if its zygote dies (see the module's notes)
            self._pidfd: int | None = os.pidfd_open(pid)
        except OSError:  # it has exited and been reaped already: the zygote reports its code
            self._pidfd = None

    async def wait(self) -> int:
        """Wait until the process has exited; its exit code (negative: killed by a signal)."""
        # Called again after a cancelled call (a supervisor's grace period): each step is
        # taken once, so that call goes on where the last one stopped.
        if self.returncode is None:
            code = None
            if self._report is not None:
                code = await _read_int(self._report)
                self._report.close()
                self._report = None
            if code is None:  # the zygote died first; the agent is this process's child now
                code = await self._wait_orphan()
            self.returncode = code
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        return self.returncode

    async def _wait_orphan(self) -> int:
        """The exit code of an agent whose zygote died, once it exits: re-parented to this
        process (a subreaper), it is reaped here. -SIGTERM if that cannot be known."""
        if self._pidfd is None:
            return -signal.SIGTERM
        await anyio.wait_readable(self._pidfd)  # readable once the process has exited
        with anyio.move_on_after(_ADOPT_WAIT_SECONDS):
            while True:  # the kernel may re-parent it a moment after it exited
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG
                except ChildProcessError:
                    pid = 0
                if pid:
                    return os.waitstatus_to_exitcode(status)
                await anyio.sleep(0.01)
        logger.warning("agent %d exited after its zygote; its exit code is unknown", self.pid)
        return -signal.SIGTERM

    def send_signal(self, sig: signal.Signals, /) -> None:
        """Send ``sig`` unless the process has been reaped already (its pid may be reused)."""
        if self.returncode is None:
            with suppress(ProcessLookupError):
                if self._pidfd is not None:
                    signal.pidfd_send_signal(self._pidfd, sig)
                else:
                    os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class AgentLauncher:
    """Forks agent processes from one zygote; ``with AgentLauncher.start() as launcher:``."""

    def __init__(
        self,
        pid: int,
        control: socket.socket,
        process: subprocess.Popen[bytes] | None = None,
        *,
        life: tuple[int, int],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.pid = pid  # the zygote's
        self.process = process  # when it was spawned rather than forked
        self.restarts = 0  # zygotes started again after one died
        self._control = control
        self._life_r, self._life_w = life  # the life pipe: see the module's notes
        self._env = env
        self._sending = anyio.Lock()
        self._exited: int | None = None  # the forked zygote's exit code, once reaped
        _become_subreaper()

    @classmethod
    @contextmanager
    def fork(cls) -> Iterator[AgentLauncher]:
        """The zygote as a fork of this process, which imports the agent code first (most of it
        an orchestrator has imported already): no second interpreter imports it all again.
        This process must have no thread and no event loop yet (checked: it is a
        :class:`LauncherError` otherwise); :meth:`start` has no such condition."""
        importlib.import_module("agentmem.agents.__main__")
        if threading.active_count() > 1 or _loop_running():
            msg = "AgentLauncher.fork() needs a process without threads or a running event loop"
            raise LauncherError(msg)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        life = os.pipe()
        with ours:
            for stream in (sys.stdout, sys.stderr):  # or the zygote's agents would repeat it
                stream.flush()
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:  # the zygote
                try:
                    ours.close()
                    for fd in life:  # each agent gets the read end with its request only
                        os.close(fd)
                    zygote.become_forked_zygote(parent)
                    zygote.serve(theirs)
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(1)
            theirs.close()
            ours.setblocking(False)
            launcher = cls(pid, ours, life=life)
            try:
                yield launcher
            finally:
                launcher.close()

    @classmethod
    @contextmanager
    def start(cls, env: Mapping[str, str] | None = None) -> Iterator[AgentLauncher]:
        """Start the zygote now (it imports the agent code while the caller goes on); stop it
        on leaving. Call it with no event loop running, or from one: it does not block."""
        ours, process = _spawn_zygote(env)
        with ours:
            launcher = cls(process.pid, ours, process, life=os.pipe(), env=env)
            try:
                yield launcher
            finally:
                launcher.close()

    def close(self) -> None:
        """Stop the zygote: end of file on its socket, then SIGKILL if it lingers. Agents still
        running get SIGTERM (the life pipe ends)."""
        self._control.close()
        for fd in (self._life_w, self._life_r):
            with suppress(OSError):
                os.close(fd)
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
        self,
        role: Role,
        run_id: str,
        instance: int,
        settings: Settings,
        log_path: Path,
        *,
        traceparent: str | None = None,
    ) -> AgentChild:
        """Fork one agent of ``run_id`` that runs with ``settings`` (exactly: not the zygote's
        environment), its output appended to ``log_path``, its span a child of
        ``traceparent``; returns once it runs."""
        request = LaunchRequest(
            role, run_id, instance, settings.handoff_json(), str(log_path), traceparent
        ).encode()
        for last in (False, True):  # a second time from a new zygote, if this one died
            async with self._sending:
                if self.exit_code() is not None:
                    self._restart()
            ours, theirs = socket.socketpair()
            ours.setblocking(False)
            try:
                with theirs:
                    async with self._sending:
                        await self._send(request, theirs)
                pid = await _read_int(ours)
            except LauncherError:
                ours.close()
                if last:
                    raise
                continue
            except BaseException:
                ours.close()
                raise
            if pid is not None and pid >= 0:
                return AgentChild(pid, ours)
            ours.close()
            code = self.exit_code()
            if code is None or last:
                why = "could not fork" if code is None else f"exited with code {code}"
                msg = f"cannot start agent {role}-{instance}: the agent zygote {why}"
                raise LauncherError(msg)
        raise AssertionError  # pragma: no cover - the loop returns or raises

    def _restart(self) -> None:
        """Replace a dead zygote (reaped by :meth:`exit_code`) by a new interpreter's."""
        logger.warning(
            "the agent zygote (pid %d) exited with code %s; starting another",
            self.pid,
            self.exit_code(),
        )
        ours, process = _spawn_zygote(self._env)
        self._control.close()
        self._control, self.pid, self.process, self._exited = ours, process.pid, process, None
        self.restarts += 1

    async def _send(self, request: bytes, report: socket.socket) -> None:
        while True:
            try:
                socket.send_fds(self._control, [request], [report.fileno(), self._life_r])
            except BlockingIOError:
                await anyio.wait_writable(self._control)
            except OSError as exc:
                msg = f"the agent zygote is gone ({exc}); the run cannot start agents"
                raise LauncherError(msg) from exc
            else:
                return


def _spawn_zygote(
    env: Mapping[str, str] | None,
) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """``python -m agents.zygote`` (it imports the agent code while the caller goes on), and
    this process's end of its control socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "agentmem.agents.zygote", "--parent", str(os.getpid())],
            stdin=theirs.fileno(),
            stdout=subprocess.DEVNULL,
            env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    ours.setblocking(False)
    return ours, process


def _become_subreaper() -> None:
    """Make this process the one that orphaned descendants (the agents of a zygote that died)
    are re-parented to, so it can reap them for their exit codes."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        logger.warning("cannot become a child subreaper (errno %d)", ctypes.get_errno())


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
