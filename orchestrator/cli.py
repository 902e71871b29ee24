"""The ``agentmem`` command: run the agents on a topic, list runs, and look inside one.

Configuration comes from the environment (see ``agents/settings.py`` and the README); the
options here are per run. Without ``REDIS_URL`` / ``DATABASE_URL`` the commands start local
Redis and PostgreSQL servers in the data directory and stop them when they exit. The commands
live in :mod:`orchestrator.cli_run` and :mod:`orchestrator.cli_runs`; importing them here
registers them on :data:`app`.
"""

from __future__ import annotations

import logging

from orchestrator import cli_run, cli_runs
from orchestrator.cli_common import app

__all__ = ["app", "cli_run", "cli_runs", "main"]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)  # reconnects after an outage
    # The supervisor tells the person about each restart itself; its log line would repeat it.
    logging.getLogger("orchestrator.supervisor").setLevel(logging.ERROR)
    app()


if __name__ == "__main__":
    main()
