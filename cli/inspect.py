"""``agentmem runs / inspect / dead-letters / requeue / forget / serve``: look inside runs."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from agentmem.cli.common import (
    app,
    checked_run_id,
    console,
    fail,
    one_line_errors,
    servers,
    settings_from_env,
)
from agentmem.web import DEFAULT_PORT, HOST

# The commands import what they run when they run (see cli.common).
if TYPE_CHECKING:
    from agentmem.agents import Settings
    from agentmem.memory import Memory, RunEntry
    from agentmem.web.app import Mounted


@app.command(short_help="List the runs, newest first.")
@one_line_errors
def runs(
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="Show at most this many.", metavar="N")
    ] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per run, one per line.")
    ] = False,
) -> None:
    """List the runs, newest first: id, topic, state, sections, duration, start time."""
    import anyio

    from agentmem.memory import open_memory

    settings = settings_from_env()

    async def go(ready: Settings) -> list[RunEntry]:
        async with open_memory(ready.memory_config(), "runs") as m:
            return await m.runs.newest(limit)

    with servers(settings, quiet=as_json) as ready:
        entries = anyio.run(go, ready)
    if as_json:
        for entry in entries:
            typer.echo(entry.model_dump_json())
        return
    if not entries:
        console().print("no runs yet; start one with: agentmem run")
        return
    _run_list(entries)


_STATE_STYLE = {"completed": "green", "failed": "red"}


def _run_list(entries: list[RunEntry]) -> None:
    """One line per run, in columns. Run ids are never wrapped or cut, whatever the width (a
    pipe is 80 columns): the topic is the column that gives way, and a line longer than the
    terminal is left to it, never folded."""
    from rich.text import Text

    id_width = max(len("run"), *(len(e.run_id) for e in entries))
    fixed = id_width + 9 + 5 + 7 + 19 + 5 * 2  # the other columns and the gaps between all six
    topic_width = max(6, min(40, console().width - fixed))
    header = (
        f"{'run':<{id_width}}  {'topic':<{topic_width}}  {'state':<9}  {'done':<5}  "
        f"{'took':>7}  started (UTC)"
    )
    console().print(Text(header, style="bold"), soft_wrap=True)
    for entry in entries:
        seconds = entry.seconds
        topic = entry.topic
        if len(topic) > topic_width:
            topic = f"{topic[: topic_width - 1]}…"
        done = f"{entry.approved}/{entry.sections}" if entry.sections else "-"
        took = "-" if seconds is None else f"{seconds:.1f} s"
        console().print(
            Text.assemble(
                f"{entry.run_id:<{id_width}}  {topic:<{topic_width}}  ",
                (f"{entry.state:<9}", _STATE_STYLE.get(entry.state, "")),
                f"  {done:<5}  {took:>7}  {entry.started_at:%Y-%m-%d %H:%M:%S}",
            ),
            soft_wrap=True,
        )


@app.command(short_help="Show a run: sections, failures, versions.")
@one_line_errors
def inspect(
    run_id: Annotated[
        str, typer.Argument(help="The run to look at.", callback=checked_run_id, metavar="RUN_ID")
    ],
    facts: Annotated[bool, typer.Option("--facts", help="Also list the run's facts.")] = False,
    events: Annotated[bool, typer.Option("--events", help="Also list the run's events.")] = False,
    section: Annotated[
        str | None,
        typer.Option(
            help="Show every version of this section, its reviews and what changed.",
            metavar="SECTION",
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Show event payloads whole, not shortened.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="The run as one JSON object (payloads whole).")
    ] = False,
) -> None:
    """Show a run: its sections, why it failed if it did, and on request more detail."""
    import anyio

    from agentmem.orchestrator.inspection import run_json, show_run

    settings = settings_from_env()
    with servers(settings, quiet=as_json) as ready:
        if as_json:
            shown = anyio.run(
                lambda: run_json(ready, run_id, facts=facts, events=events, section=section)
            )
            found = shown is not None
            if shown is not None:
                typer.echo(json.dumps(shown, ensure_ascii=False))
        else:
            found = anyio.run(
                lambda: show_run(
                    ready, run_id, console(), facts=facts, events=events, section=section, full=full
                )
            )
    if not found:
        _unknown_run(run_id)


def _unknown_run(run_id: str) -> NoReturn:
    fail(
        f"run {run_id!r} has no events here; `agentmem runs` lists the runs "
        "(are REDIS_URL and AGENTMEM_DATA_DIR the same as for the run?)"
    )


@app.command("dead-letters", short_help="List the handoffs the agents gave up on.")
@one_line_errors
def dead_letters(
    run_id: Annotated[
        str, typer.Argument(help="The run to look at.", callback=checked_run_id, metavar="RUN_ID")
    ],
    full: Annotated[
        bool, typer.Option("--full", help="Show what each one carried in full.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per dead letter, one per line.")
    ] = False,
) -> None:
    """List the handoffs the agents of a run gave up on, and why."""
    import anyio

    from agentmem.orchestrator.inspection import dead_letter_json, show_dead_letters
    from agentmem.orchestrator.inspection import dead_letters as read_dead_letters

    settings = settings_from_env()
    with servers(settings, quiet=as_json) as ready:
        letters = anyio.run(lambda: read_dead_letters(ready, run_id))
    if letters is None:
        _unknown_run(run_id)
    if as_json:
        for letter in letters:
            typer.echo(json.dumps(dead_letter_json(letter), ensure_ascii=False))
        return
    show_dead_letters(console(), letters, full=full)


@app.command(short_help="Hand a given-up handoff to the agents again.")
@one_line_errors
def requeue(
    run_id: Annotated[
        str,
        typer.Argument(help="The run it belongs to.", callback=checked_run_id, metavar="RUN_ID"),
    ],
    dead_letter_id: Annotated[
        str, typer.Argument(help="The id `agentmem dead-letters` shows for it.", metavar="ID")
    ],
) -> None:
    """Hand a handoff the agents gave up on to them again (after fixing its cause)."""
    import anyio

    from agentmem.memory import open_memory
    from agentmem.protocol import RUN_STREAM

    settings = settings_from_env()

    async def go(ready: Settings) -> str | None:
        async with open_memory(ready.memory_config(), run_id) as m:
            log = m.events(RUN_STREAM)
            if dead_letter_id not in {d.dead_letter_id for d in await log.dead_letters(1000)}:
                return None
            return await log.requeue(dead_letter_id)

    with servers(settings) as ready:
        entry_id = anyio.run(go, ready)
    if entry_id is None:
        fail(
            f"run {run_id!r} has no dead letter {dead_letter_id!r}; "
            f"`agentmem dead-letters {run_id}` lists them"
        )
    console().print(
        f"requeued as entry {entry_id}: the agents will take it up again", highlight=False
    )


@app.command(short_help="Delete what a run stored.")
@one_line_errors
def forget(
    run_id: Annotated[
        str, typer.Argument(help="The run to delete.", callback=checked_run_id, metavar="RUN_ID")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Delete a run the index says is still running (its agents died)."
        ),
    ] = False,
) -> None:
    """Delete everything a run stored in Redis and PostgreSQL (its report files are kept);
    the run's tenant's audit log records it. A run still running is refused without --force:
    its agents or workers would find its streams gone under them."""
    if not yes:
        typer.confirm(f"Delete everything run {run_id} stored?", abort=True)
    import anyio

    from agentmem.cli.tenants import OPERATOR
    from agentmem.memory import open_memory
    from agentmem.memory.admission import Submissions
    from agentmem.memory.audit import AuditLog, AuditRecord

    settings = settings_from_env()

    async def go(ready: Settings) -> tuple[int, int] | None:
        async with open_memory(ready.memory_config(), run_id) as m:
            entry = await m.runs.get(run_id)
            if entry is not None and entry.state == "running" and not force:
                return None  # refused: its agents or workers are at work in it
            tenant = await Submissions(m.client).tenant_of(run_id)  # gone once dropped
            dropped = await m.drop()
            await m.runs.remove(run_id)
            record = AuditRecord(tenant or "-", OPERATOR, "forget", run_id)
            await AuditLog(m.db.pool).record(record)
            return dropped

    with servers(settings) as ready:
        dropped = anyio.run(go, ready)
    if dropped is None:
        fail(
            f"run {run_id} is still running; wait for it to end (agentmem wait), or pass "
            "--force if its agents are gone"
        )
    keys, versions = dropped
    console().print(f"run {run_id}: deleted {keys} Redis keys and {versions} document versions")


@app.command(short_help="Show the runs in a web browser.")
@one_line_errors
def serve(
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port to listen on.", metavar="PORT")
    ] = DEFAULT_PORT,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; beyond loopback only with authentication.", metavar="H"
        ),
    ] = HOST,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Another host name clients use for this server (a proxy's); repeatable.",
            metavar="NAME",
        ),
    ] = None,
    auth: Annotated[
        bool,
        typer.Option(
            "--auth", help="Require a tenant's key even if no key exists yet (on when one does)."
        ),
    ] = False,
) -> None:
    """Serve a web view of the runs until Ctrl-C: each run's sections, versions, reviews,
    facts, timeline and dead letters, updated live while a run goes on; the service's API and
    the MCP endpoint. Once a tenant has a key (`agentmem tenants add`), every request needs one
    and sees only its tenant's runs; without keys it serves loopback only, to one local user."""
    import anyio
    import uvicorn

    from agentmem.memory import open_memory
    from agentmem.memory.tenants import TenantKeys
    from agentmem.web import create_app

    settings = settings_from_env()

    async def keys_exist(ready: Settings) -> bool:
        async with open_memory(ready.memory_config(), "web") as memory:
            return await TenantKeys(memory.db.pool).any_active()

    # The socket is bound here, before anything starts: a taken port is one line and exit 1,
    # and uvicorn serves on this very socket (no window for another process to take it).
    with _listening(host, port) as sock, servers(settings) as ready:
        auth = auth or anyio.run(keys_exist, ready)
        if not auth and not is_loopback(host):
            fail(
                f"refusing to serve {host} without authentication: make a tenant's key first "
                "(agentmem tenants add NAME), or pass --auth",
                code=2,
            )
        shown = f"[{host}]" if ":" in host else host
        who = (
            "a tenant's key required (Authorization: Bearer, or sign in at /login)"
            if auth
            else "open to any local user: no tenant keys exist (agentmem tenants add NAME)"
        )
        console().print(
            f"web view on http://{shown}:{port}/: {who} (Ctrl-C stops it)", highlight=False
        )
        config = uvicorn.Config(
            create_app(
                ready.memory_config(client_name="agentmem:web"),
                settings=ready,
                auth=auth,
                hosts=frozenset([host, *(allow_host or [])]) - WILDCARDS,
                mount=_mcp_endpoint(),
            ),
            log_level="warning",
        )
        uvicorn.Server(config).run(sockets=[sock])  # stops on Ctrl-C, then the servers' lease


def _mcp_endpoint() -> Callable[[Callable[[], Memory]], Mounted] | None:
    """What serves ``/mcp`` over the view's memory, or None without the ``mcp`` extra."""
    try:
        from agentmem.mcp import HttpEndpoint  # optional: the mcp extra
    except ImportError:
        return None
    return HttpEndpoint


@contextmanager
def _listening(host: str, port: int) -> Iterator[socket.socket]:
    """A socket bound to ``host:port``, or a one-line error saying why it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        fail(f"cannot listen on {host}:{port}: {reason}; choose another port with --port")
    with sock:
        yield sock


WILDCARDS = frozenset({"0.0.0.0", "::", "[::]"})  # every interface: not a name clients use


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere
