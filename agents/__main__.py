"""Run one agent process: ``python -m agentmem.agents <role> --run-id RUN --instance N``.

Reads the settings once, logs JSON lines to stderr, runs the role's loop until the run ends
(``run.completed`` or ``run.failed``), SIGTERM or SIGINT, and exits 0 on any of those or
non-zero (with a one-line reason) on an error it cannot recover from, such as another live
process holding the same role and instance. It needs only ``REDIS_URL`` and ``DATABASE_URL``:
started on another host with the same URLs, it joins the run (``agentmem agent`` does the same).

Started by hand, it reads its settings from its environment. The orchestrator hands its agents
its own settings whole instead (:meth:`Settings.handoff_json`): in the launch request of a
forked agent (:mod:`agents.zygote`), or on standard input with ``--settings-from-stdin``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import anyio
from pydantic import ValidationError

from agentmem.agents import research, reviewer, writer
from agentmem.agents.lifetime import die_with_parent
from agentmem.agents.runtime import Handler, run_agent
from agentmem.agents.settings import Settings
from agentmem.memory import AgentMemoryError, InvalidIdError, leaves, telemetry, validate_id
from agentmem.protocol.roles import Role

HANDLERS: dict[Role, Handler] = {
    Role.RESEARCH: research.handle,
    Role.WRITER: writer.handle,
    Role.REVIEW: reviewer.handle,
}

EXIT_ERROR = 1
EXIT_USAGE = 2

logger = logging.getLogger("agentmem.agents")


class JsonLines(logging.Formatter):
    """One JSON object per record: ts, level, logger, agent, msg (and exc when present)."""

    def __init__(self, agent_id: str) -> None:
        super().__init__()
        self.agent_id = agent_id

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "agent": self.agent_id,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agentmem.agents",
        description="Run one agent process of a run; it coordinates with the others only "
        "through Redis and PostgreSQL (REDIS_URL, DATABASE_URL).",
    )
    parser.add_argument("role", choices=[r.value for r in Role], help="which agent to run")
    parser.add_argument("--run-id", required=True, help="the run to work on (its namespace)")
    parser.add_argument(
        "--instance", type=int, default=1, help="instance number within the role (default 1)"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--supervised",
        action="store_true",
        help="stop when the parent process exits (the orchestrator's supervisor passes it)",
    )
    parser.add_argument(
        "--settings-from-stdin",
        action="store_true",
        help="read the settings as one JSON object on standard input, not from the environment "
        "(the orchestrator's supervisor passes them so)",
    )
    args = parser.parse_args(argv)
    if args.instance < 1:
        parser.error(f"--instance must be 1 or more, got {args.instance}")
    try:
        validate_id(args.run_id, "--run-id")
    except InvalidIdError as exc:
        parser.error(str(exc))
    return args


def setup_logging(agent_id: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines(agent_id))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("httpx", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


async def run_until_signalled(settings: Settings, role: Role, run_id: str, instance: int) -> str:
    """Run the agent until its run ends (returns how) or SIGTERM or SIGINT cancels it (returns
    ""); the runtime closes what it opened."""
    ended = ""
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    logger.info("received %s; stopping", signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signal)
        ended = await run_agent(settings, role, run_id, instance, HANDLERS[role])
        tg.cancel_scope.cancel()
    return ended


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.supervised:
        parent = os.getppid()
        die_with_parent(signal.SIGTERM)()  # never outlive the orchestrator, even if it is killed
        if os.getppid() != parent:  # it died before the request took effect
            return EXIT_ERROR
    handoff = sys.stdin.read() if args.settings_from_stdin else None
    return serve_agent(Role(args.role), args.run_id, args.instance, args.log_level, handoff)


def serve_agent(
    role: Role,
    run_id: str,
    instance: int,
    log_level: str = "INFO",
    settings: Settings | str | None = None,
) -> int:
    """Run one agent of ``run_id`` in this process until the run ends; the exit code.

    Its ``settings`` are given, or handed over as JSON (:meth:`Settings.handoff_json`, the
    orchestrator's), or else (None) read from the environment."""
    setup_logging(f"{role}-{instance}", log_level)
    try:
        if settings is None:
            settings = Settings()
        elif isinstance(settings, str):
            settings = Settings.from_handoff(settings)
    except ValidationError as exc:
        where = "the environment" if settings is None else "the settings handed over"
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )  # without the input values: they may be secrets
        logger.error("invalid settings in %s: %s", where, problems)  # noqa: TRY400 - one line
        return EXIT_USAGE
    try:
        ended = anyio.run(run_until_signalled, settings, role, run_id, instance)
    except Exception as exc:  # the last stop: report why, in one line each, and exit non-zero
        for error in leaves(exc):
            if isinstance(error, AgentMemoryError | OSError):
                logger.error("stopped: %s", error)  # noqa: TRY400
            else:
                logger.error("stopped by an unexpected error: %r", error, exc_info=error)  # noqa: TRY400
        return EXIT_ERROR
    finally:
        telemetry.shutdown()  # a forked agent ends with os._exit: no exit handlers run
    logger.info("%s", ended or "stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
