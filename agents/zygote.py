"""A fork server for agent processes: ``python -m agents.zygote``, started by the orchestrator.

A new interpreter spends most of its start importing the agent code (pydantic, redis, asyncpg,
the roles) before an agent can connect, and nine agents started at once share the CPUs for it
before the first handoff (docs/performance.md, "Start-up", has the figures). The zygote
imports that code once, then forks each agent from itself on request. Each agent is still a
fresh OS process of its own (own pid, memory, Redis client and PostgreSQL pool, nothing shared
but the servers), and the zygote never holds an event loop, a thread or a connection that a
fork could copy.

The protocol, on the ``SOCK_SEQPACKET`` socket the orchestrator passes as standard input:

- a request is one message, a :class:`LaunchRequest` as a JSON object (``role``, ``run_id``,
  ``instance``, ``settings``, the orchestrator's :class:`~agents.settings.Settings` whole, as
  :meth:`~agents.settings.Settings.handoff_json` writes it, ``log``, the file its output goes
  to, and ``traceparent``, the span the agent's own starts from), carrying two file
  descriptors: the *report socket* for that agent, and the read end of the orchestrator's
  *life pipe* (whose write end only the orchestrator holds);
- on the report socket the zygote writes the agent's pid, then, once it has exited and been
  reaped, its exit code (negative for a signal, as :mod:`subprocess` reports it), each an 8-byte
  signed integer; it writes ``-1`` as the pid and closes the socket if it cannot fork.

An agent runs with the settings its request carries, not with what the environment says (it
keeps the zygote's environment, which may hold other values or none): the orchestrator's
settings reach it exactly, those given as CLI flags included. The request carries secrets (the
server URLs, the API key); nothing here logs it.

The zygote stops when its standard input reaches end of file (the orchestrator closed it or
died) or when the orchestrator dies (it asks the kernel for SIGTERM then). An agent does not
die with the zygote: the zygote is only where it was forked from, and a zygote that dies (a
SIGKILL, a crash) is replaced by the orchestrator for the next agent it starts
(:class:`orchestrator.launcher.AgentLauncher`) while the agents already running go on. An agent
dies with the orchestrator instead: a thread of its own waits on the life pipe, which reaches
end of file when the orchestrator closes it or dies however it dies, and then sends the agent
SIGTERM. (The kernel's parent-death signal cannot name a grandparent, and it fires when the
parent dies even if the orphan is re-parented to a subreaper, so it cannot serve here.) An
agent's
process title is the command line that starts the same agent by hand (``python -m agentmem.agents
writer --run-id R --instance 2 --supervised``), so ``ps``, ``pgrep`` and the chaos tool find
agents by command line as they always did.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import shlex
import signal
import socket
import struct
import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, NoReturn, Self

import setproctitle

from agentmem.protocol.roles import Role

# Only light modules are imported at the top: the orchestrator imports INT from here before
# it starts the zygote, and main() imports the rest in the zygote only.

INT = struct.Struct("!q")  # the pid, then the exit code, on an agent's report socket
MAX_REQUEST_BYTES = 1 << 20
_EXIT_ERROR = 1


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    """One agent of a run, asked of the zygote: who it is, its settings, where it logs."""

    role: Role
    run_id: str
    instance: int
    settings: str = field(repr=False)  # Settings.handoff_json(): secrets in clear
    log: str
    traceparent: str | None = None  # the run's span, the parent of the agent's

    def encode(self) -> bytes:
        fields: dict[str, Any] = {
            "role": self.role.value,
            "run_id": self.run_id,
            "instance": self.instance,
            "settings": self.settings,
            "log": self.log,
            "traceparent": self.traceparent,
        }
        return json.dumps(fields).encode()

    @classmethod
    def decode(cls, message: bytes) -> Self:
        """The request in ``message``; ``ValueError`` if it is not one (cut short, not ours)."""
        try:
            fields = json.loads(message)
            traceparent = fields.get("traceparent")
            return cls(
                role=Role(fields["role"]),
                run_id=str(fields["run_id"]),
                instance=int(fields["instance"]),
                settings=str(fields["settings"]),
                log=str(fields["log"]),
                traceparent=None if traceparent is None else str(traceparent),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            msg = f"not a launch request: {type(exc).__name__}"
            raise ValueError(msg) from None


def agent_title(role: str, run_id: str, instance: int) -> str:
    """The process title of an agent: the command line that would start it by hand."""
    words = [
        "python",
        "-m",
        "agentmem.agents",
        role,
        "--run-id",
        run_id,
        "--instance",
        str(instance),
    ]
    return shlex.join([*words, "--supervised"])


def become_forked_zygote(parent: int) -> None:
    """Set up a zygote forked from an orchestrator (pid ``parent``): SIGTERM when it dies, and
    a title of its own (it would show the orchestrator's command line)."""
    from agentmem.agents.lifetime import die_with_parent

    die_with_parent(signal.SIGTERM)()
    if os.getppid() != parent:  # the orchestrator died before the request took effect
        os._exit(_EXIT_ERROR)
    setproctitle.setproctitle(f"python -m agentmem.agents.zygote --parent {parent}")


def main(argv: list[str]) -> int:  # noqa: RET503 - serve() exits the process
    """Serve requests until standard input ends; ``argv`` may name the orchestrator's pid
    (``--parent PID``): if it is gone already, stop at once."""
    from agentmem.agents.lifetime import die_with_parent

    die_with_parent(signal.SIGTERM)()
    if len(argv) == 2 and argv[0] == "--parent" and os.getppid() != int(argv[1]):
        return _EXIT_ERROR  # the orchestrator died while this process was starting
    # The import this server exists for: every role and everything they use (agents.__main__
    # imports them), done once here instead of in every agent process.
    importlib.import_module("agentmem.agents.__main__")
    serve(socket.socket(fileno=os.dup(0)))  # never returns


def serve(control: socket.socket) -> NoReturn:
    """Fork agents on the requests that come on ``control`` until it ends, then exit.

    Run by :func:`main`, or in a fork of an orchestrator that has imported ``agents.__main__``
    itself and has no thread or event loop yet (:meth:`AgentLauncher.fork`)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # the control socket (or a terminal) is no agent's stdin
    os.dup2(devnull, 1)  # nor is an orchestrator's stdout: it would not see end of file
    os.close(devnull)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes select() via wake_w
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the orchestrator decides, then closes
    reports: dict[int, socket.socket] = {}
    while True:
        try:
            ready, _, _ = select.select([control.fileno(), wake_r], [], [])
        except InterruptedError:  # pragma: no cover - retried by Python itself (PEP 475)
            continue
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            _reap(reports)
        if control.fileno() in ready:
            message, fds, _, _ = socket.recv_fds(control, MAX_REQUEST_BYTES, 2)
            if not message:  # the orchestrator closed its end or died: stop, at once (os._exit:
                # a fork server has nothing to tear down, and its owner waits for it)
                os._exit(0)
            if len(fds) != 2:
                for fd in fds:
                    os.close(fd)
                continue
            report, life = socket.socket(fileno=fds[0]), fds[1]
            try:
                request: LaunchRequest | None = LaunchRequest.decode(message)
            except ValueError as exc:  # cut short (over MAX_REQUEST_BYTES) or not ours: refuse
                sys.stderr.write(f"refused a launch request: {exc}\n")
                request = None
            pid = (
                -1
                if request is None
                else _fork(request, report, life, [control, *reports.values()], (wake_r, wake_w))
            )
            os.close(life)  # the agent has its own copy
            with contextlib.suppress(OSError):  # the orchestrator gave up on it: still reaped
                report.sendall(INT.pack(pid))
            if pid > 0:
                reports[pid] = report
            else:
                report.close()


def _reap(reports: dict[int, socket.socket]) -> None:
    """Collect every agent that has exited and tell the orchestrator its exit code."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        report = reports.pop(pid, None)
        if report is not None:
            with contextlib.suppress(OSError):
                report.sendall(INT.pack(os.waitstatus_to_exitcode(status)))
            report.close()


def _fork(
    request: LaunchRequest,
    report: socket.socket,
    life: int,
    inherited: list[socket.socket],
    wake: tuple[int, int],
) -> int:
    """Fork one agent; the pid in the zygote (-1 if it could not fork). Never returns in the
    agent."""
    try:
        pid = os.fork()
    except OSError:
        traceback.print_exc()
        return -1
    if pid > 0:
        return pid
    code = _EXIT_ERROR
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sock in (*inherited, report):
            sock.close()
        for fd in wake:
            os.close(fd)
        die_with_orchestrator(life)
        code = _serve(request)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def die_with_orchestrator(life: int) -> None:
    """Send this process SIGTERM once ``life`` (the read end of the orchestrator's life pipe)
    reaches end of file: the orchestrator closed it, or died. At once if it has already."""

    def watch() -> None:
        while True:
            try:
                if not os.read(life, 1):
                    break
            except InterruptedError:  # pragma: no cover - retried by Python itself (PEP 475)
                continue
            except OSError:
                break
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="die-with-orchestrator", daemon=True).start()


def _serve(request: LaunchRequest) -> int:
    """Become the agent ``request`` describes and run it until it stops; its exit code."""
    role, run_id, instance = request.role, request.run_id, request.instance
    log = os.open(request.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    title = agent_title(role.value, run_id, instance)
    setproctitle.setproctitle(title)  # first: it finds the argv area through the environment
    sys.argv = shlex.split(title)[2:]
    from agentmem.agents.__main__ import serve_agent
    from agentmem.memory import telemetry

    os.environ.pop(telemetry.TRACEPARENT_ENV, None)  # the zygote's own is not the run's
    if request.traceparent is not None:
        os.environ[telemetry.TRACEPARENT_ENV] = request.traceparent

    return serve_agent(role, run_id, instance, settings=request.settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
