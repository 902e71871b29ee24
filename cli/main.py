"""The ``agentmem`` command: run the agents on a topic, list runs, and look inside one.

Configuration comes from the environment (see ``agents/settings.py`` and the README); the
options here are per run. Without ``REDIS_URL`` / ``DATABASE_URL`` the commands start local
Redis and PostgreSQL servers in the data directory and stop them when they exit. The commands
live in the modules of this package (:mod:`cli.start`, :mod:`cli.inspect`...); importing them
here registers them on :data:`app`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn

from agentmem.cli.common import app
from agentmem.cli.servers import servers_app

# Each module registers its commands on ``app`` when imported: this order is ``--help``'s.
# isort: off
from agentmem.cli import mcp, start, inspect, service, tenants
# isort: on

app.add_typer(servers_app, name="servers")

__all__ = ["app", "inspect", "main", "mcp", "service", "start", "tenants"]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)  # reconnects after an outage
    # The supervisor tells the person about each restart itself; its log line would repeat it.
    logging.getLogger("agentmem.orchestrator.supervisor").setLevel(logging.ERROR)
    try:
        app()
    except SystemExit as exc:
        end_now(exc.code)
    except BrokenPipeError:  # a command not guarded by one_line_errors, whose reader went away
        end_now(0)
    end_now(0)


def end_now(code: str | int | None) -> NoReturn:
    """Exit with ``code`` once the command is done, without the interpreter's teardown.

    Every command closes what it opened (servers, agents, connections, files) before it
    returns; what is left is the interpreter freeing, one by one, the hundreds of modules a run
    imports, a noticeable part of a short run (docs/performance.md). Skipping the teardown also
    skips ``atexit``, so what must outlive the command is done here, explicitly: the spans
    still buffered are exported, the log handlers and the output streams are flushed.
    """
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    telemetry = sys.modules.get("agentmem.memory.telemetry")  # not imported: no span was recorded
    if telemetry is not None:
        telemetry.shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    main()
