"""``agentmem worker``, ``submit``, ``wait`` and ``status``: the service's commands.

A pool of long-lived workers (``agentmem worker ROLE``, one or more per role) serves every run
submitted with ``agentmem submit`` (or ``POST /api/runs``); see :mod:`service` and
docs/service.md. They use the servers named by ``REDIS_URL`` and ``DATABASE_URL``, or when
those are unset the checkout's shared local servers (:func:`cli_common.servers`), so that a
pool, its submissions and ``agentmem serve`` on one machine meet on the same servers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from agentmem.cli.common import (
    app,
    checked_run_id,
    checked_topic,
    console,
    fail,
    one_line_errors,
    servers,
    settings_from_env,
)
from agentmem.orchestrator.defaults import DEFAULT_TOPIC, PROJECT_SOURCES

# The commands import what they run when they run (see cli.common).

ROLES = ("research", "writer", "review", "coordinator")
EXIT_FAILED = 1
EXIT_TIMEOUT = 2


@app.command(short_help="Serve one role for every submitted run, until stopped.")
def worker(
    role: Annotated[str, typer.Argument(help="research, writer, review or coordinator.")],
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Handoffs served at once.")] = 1,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Serve one role for every run until SIGTERM or SIGINT; then drain and exit 0.

    On SIGTERM the worker takes no new work, lets what it holds finish for up to
    AGENTMEM_DRAIN_GRACE_SECONDS, and hands the rest back for another worker to take at once.
    """
    if role not in ROLES:
        msg = f"{role!r} is not one of {', '.join(ROLES)}"
        raise typer.BadParameter(msg, param_hint="ROLE")
    if log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise typer.BadParameter(log_level, param_hint="--log-level")
    import anyio

    from agentmem.agents.__main__ import HANDLERS, setup_logging
    from agentmem.memory import AgentMemoryError, leaves
    from agentmem.service.routes import PoolRole
    from agentmem.service.worker import serve_worker

    pool_role = PoolRole(role)
    setup_logging(f"{role}-pool", log_level.upper())
    handlers = {PoolRole(r.value): h for r, h in HANDLERS.items()}
    configured = settings_from_env()  # a bad setting: its one line and exit 2, from here
    try:
        with servers(configured) as settings:
            anyio.run(serve_worker, settings, pool_role, concurrency, handlers)
    except Exception as exc:  # the last stop: one line, exit non-zero
        inside = leaves(exc)
        fail("; ".join(str(e) if isinstance(e, AgentMemoryError) else repr(e) for e in inside))


@app.command(short_help="Submit a run to the pool; prints its id at once.")
@one_line_errors
def submit(
    tenant: Annotated[str, typer.Option(help="Who the run is for (fairness, limits).")] = "default",
    sources: Annotated[
        Path, typer.Option(help="Folder of .md/.txt source files.", show_default=False)
    ] = PROJECT_SOURCES,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="Run id, and the submission's idempotency key (default: derived from the "
            "tenant, topic and sources).",
            callback=lambda v: v and checked_run_id(v),
        ),
    ] = None,
    topic: Annotated[
        str, typer.Option(help="What the report is about (one line).", callback=checked_topic)
    ] = DEFAULT_TOPIC,
) -> None:
    """Submit a run to the pool of workers and print its id; returns at once.

    The same submission twice makes one run. A tenant whose queue is full is refused at once
    (exit 1, one line); submit again later.
    """
    import anyio

    from agentmem.memory import open_memory
    from agentmem.orchestrator.sources import load_sources
    from agentmem.service.submit import submit as submit_run

    docs = load_sources(sources)

    async def go() -> str:
        config = settings.memory_config(client_name="agentmem:submit")
        async with open_memory(config, "service", migrate=False) as root:
            done = await submit_run(
                root, settings, tenant=tenant, topic=topic.strip(), sources=docs, run_id=run_id
            )
        return done.run_id

    with servers(settings_from_env()) as settings:
        typer.echo(anyio.run(go))


@app.command(short_help="Wait for a submitted run to end.")
@one_line_errors
def wait(
    run_id: Annotated[str, typer.Argument(help="The run.", callback=checked_run_id)],
    timeout: Annotated[float, typer.Option(min=0, help="Give up after this many seconds.")] = 600,
) -> None:
    """Exit 0 when the run completed, 1 if it failed (the reason in one line) or no such run
    was submitted, 2 on timeout."""
    import anyio

    from agentmem.memory import open_memory
    from agentmem.service.submit import RunStatus, run_state

    async def go() -> RunStatus | None:
        config = settings.memory_config(client_name="agentmem:wait")
        async with open_memory(config, "service", migrate=False) as root:
            with anyio.move_on_after(timeout):
                while True:
                    status = await run_state(root, run_id)
                    if status.state in {"completed", "failed", "unknown"}:
                        return status
                    await anyio.sleep(0.2)
        return None

    with servers(settings_from_env()) as settings:
        status = anyio.run(go)
    if status is None:
        fail(f"run {run_id} did not end within {timeout:g} s", code=EXIT_TIMEOUT)
    if status.state == "unknown":
        fail(f"no run {run_id} was submitted here (agentmem runs lists the runs)", code=EXIT_FAILED)
    if status.state == "failed":
        fail(f"run {run_id} failed: {status.error or 'no reason recorded'}", code=EXIT_FAILED)
    console().print(f"Report: {status.report_path}", soft_wrap=True, highlight=False)


@app.command(short_help="Show the pool: backlog, slots, tenants, runs.")
@one_line_errors
def status(
    as_json: Annotated[
        bool, typer.Option("--json", help="The same figures as one JSON object.")
    ] = False,
) -> None:
    """Print what ``GET /metrics`` serves, for a person: each role's backlog, oldest waiting
    handoff, workers and busy/free slots; each tenant's runs in flight and waiting; runs by
    state and tenant."""
    import anyio

    from agentmem.memory import open_memory
    from agentmem.service.metrics import Snapshot, snapshot, status_json, status_lines

    async def go() -> Snapshot:
        config = settings.memory_config(client_name="agentmem:status")
        async with open_memory(config, "service", migrate=False) as root:
            return await snapshot(root, settings)

    with servers(settings_from_env()) as settings:
        snap = anyio.run(go)
    if as_json:
        typer.echo(json.dumps(status_json(snap)))
        return
    for line in status_lines(snap):
        typer.echo(line)
