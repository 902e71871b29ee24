"""The ``agentmem`` command: run the agents on a topic, list runs, and look inside one.

Configuration comes from the environment (see ``agents/settings.py`` and the README); the
options here are per run. Without ``REDIS_URL`` / ``DATABASE_URL`` the commands start local
Redis and PostgreSQL servers in the data directory and stop them when they exit.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn, ParamSpec

import anyio
import typer
import uvicorn
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agents.__main__ import serve_agent
from agents.protocol import RUN_STREAM, Role
from agents.settings import Settings
from devservers import local_servers
from memory import (
    AgentMemoryError,
    InvalidConfigError,
    InvalidIdError,
    RunEntry,
    leaves,
    open_memory,
)
from memory.keys import validate_id
from orchestrator.inspection import dead_letters as read_dead_letters
from orchestrator.inspection import show_dead_letters, show_run
from orchestrator.progress import Progress
from orchestrator.run import new_run_id, run_report
from orchestrator.sources import DEFAULT_TOPIC, PROJECT_SOURCES, load_sources
from web import DEFAULT_PORT, HOST, create_app

P = ParamSpec("P")

HELP = """Run research, writing and review agents on a folder of notes and write a report.

Settings come from environment variables (see the README). When REDIS_URL and DATABASE_URL
are not set, each command starts local Redis and PostgreSQL servers and stops them at the end.
"""

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=HELP,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no boxes, no type labels on flags
)
console = Console()
errors = Console(stderr=True)


class LLMChoice(StrEnum):
    AUTO = "auto"
    STUB = "stub"
    OPENAI = "openai"


def _settings(**overrides: object) -> Settings:
    """The settings from the environment, with this command's options applied and checked."""
    try:
        settings = Settings().model_copy(update=overrides)
        settings.check_llm()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail(f"invalid configuration in the environment: {problems}", code=2)
    except InvalidConfigError as exc:
        _fail(str(exc), code=2)
    return settings


def _fail(message: str, code: int = 1) -> NoReturn:
    errors.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    raise typer.Exit(code)


def _one_line_errors(command: Callable[P, None]) -> Callable[P, None]:
    """End the command with one line on stderr and exit 1 on any error, never a traceback.

    Project errors (and OS errors) are expected: their message is the line. Anything else is a
    bug: it is named as unexpected, and ``AGENTMEM_DEBUG=1`` shows its traceback.
    """

    @functools.wraps(command)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter, typer.exceptions.TyperException):
            raise
        except Exception as exc:
            inside = leaves(exc)
            known = all(isinstance(e, AgentMemoryError | OSError) for e in inside)
            if not known and os.environ.get("AGENTMEM_DEBUG"):
                raise
            message = "; ".join(_one_line(e) for e in inside)
            if not known:
                message = f"unexpected error: {message} (AGENTMEM_DEBUG=1 shows the traceback)"
            _fail(message)

    return guarded


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, AgentMemoryError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run_id(value: str) -> str:
    try:
        return validate_id(value, "run id")
    except InvalidIdError as exc:
        raise typer.BadParameter(str(exc)) from exc


@contextmanager
def _servers(settings: Settings, *, quiet: bool = False) -> Iterator[Settings]:
    """The settings with server URLs: the configured ones, or local servers started now (said
    on stderr unless ``quiet``)."""
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    database_url = settings.database_url.get_secret_value() if settings.database_url else None
    missing = [
        name for name, url in (("Redis", redis_url), ("PostgreSQL", database_url)) if not url
    ]
    if missing:
        unset = "/".join("REDIS_URL" if n == "Redis" else "DATABASE_URL" for n in missing)
        if not quiet:
            errors.print(f"[dim]starting local {' and '.join(missing)} ({unset} not set)…[/]")
    data_dir = Path(settings.data_dir) / "servers"
    started = time.monotonic()
    with local_servers(
        redis_url, database_url, data_dir, redis_appendfsync=settings.redis_appendfsync
    ) as urls:
        if missing and not quiet:
            errors.print(f"[dim]servers ready in {time.monotonic() - started:.1f} s[/]")
        yield settings.model_copy(
            update={
                "redis_url": SecretStr(urls.redis_url),
                "database_url": SecretStr(urls.database_url),
            }
        )


@app.command(short_help="Run the agents on the sources and write the report.")
@_one_line_errors
def run(
    topic: Annotated[str, typer.Option(help="What the report is about.")] = DEFAULT_TOPIC,
    sources: Annotated[
        Path, typer.Option(help="Folder of .md/.txt source files.", show_default=False)
    ] = PROJECT_SOURCES,
    writers: Annotated[int, typer.Option(min=1, max=8, help="Writing agent processes.")] = 1,
    reviewers: Annotated[int, typer.Option(min=1, max=8, help="Review agent processes.")] = 1,
    researchers: Annotated[
        int, typer.Option(min=1, max=8, help="Research agent processes (sources are shared).")
    ] = 1,
    llm: Annotated[LLMChoice | None, typer.Option(help="LLM: auto = stub without a key.")] = None,
    run_id: Annotated[
        str | None,
        typer.Option(help="Run id (default: generated).", callback=lambda v: v and _run_id(v)),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="Fail the run after this many seconds.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the report path.")
    ] = False,
) -> None:
    """Run the research, writing and review agents on the sources and write the report."""
    updates: dict[str, object] = {}
    if llm is not None:
        updates["llm"] = llm.value
    if timeout is not None:
        updates["run_timeout_seconds"] = timeout
    settings = _settings(**updates)
    topic = topic.strip()
    if not topic or len(topic) > 500:
        msg = "the topic must be 1 to 500 characters"
        raise typer.BadParameter(msg, param_hint="--topic")
    try:
        docs = load_sources(sources)
    except AgentMemoryError as exc:
        _fail(str(exc), code=2)
    run_id = run_id or new_run_id()
    progress = Progress(console, quiet=quiet)
    llm_name = "stub LLM" if settings.use_stub_llm else f"{settings.llm_model} via OpenAI API"
    progress.message(
        f"run [bold]{run_id}[/]: {len(docs)} sources, {researchers} researcher(s), "
        f"{writers} writer(s), {reviewers} reviewer(s), {llm_name}"
    )
    try:
        with _servers(settings, quiet=quiet) as ready:
            result = anyio.run(
                lambda: run_report(
                    ready,
                    run_id=run_id,
                    topic=topic,
                    sources=docs,
                    writers=writers,
                    progress=progress,
                    reviewers=reviewers,
                    researchers=researchers,
                )
            )
    except KeyboardInterrupt:
        _fail("interrupted; agents and servers stopped", code=130)
    t = result.timings
    if quiet:
        console.print(str(result.report_path), soft_wrap=True, highlight=False)
        return
    progress.message(
        f"done in {t['total']:.1f} s after servers were up (connect {t['connect']:.1f} s, "
        f"agents {t['agents']:.1f} s, of which agents waited {t['llm_by_agents']:.2f} s "
        "for the LLM in total)"
    )
    for name, path in (
        ("Record", result.record_path),
        ("Timeline", result.report_path.with_suffix(".html")),
    ):
        console.print(f"{name}: {path}", soft_wrap=True, highlight=False)
    console.print(f"Report: {result.report_path}", soft_wrap=True, highlight=False)


@app.command()
def agent(
    role: Annotated[Role, typer.Argument(help="Which agent to run.")],
    run: Annotated[str, typer.Option(help="The run to join.", callback=_run_id)],
    instance: Annotated[
        int, typer.Option(min=1, help="Instance number, unique within the role in the run.")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Join a run from this host as one more agent; it stops by itself when the run ends.

    Needs REDIS_URL and DATABASE_URL (the servers the run uses); no local server is started.
    """
    _settings()
    unset = [name for name in ("REDIS_URL", "DATABASE_URL") if not os.environ.get(name)]
    if unset:
        _fail(
            f"{' and '.join(unset)} must be set to join a run (the servers the run uses); "
            "agentmem agent starts no local servers",
            code=2,
        )
    if log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise typer.BadParameter(log_level, param_hint="--log-level")
    raise typer.Exit(serve_agent(role, run, instance, log_level.upper()))


@app.command(short_help="List the runs, newest first.")
@_one_line_errors
def runs(
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="Show at most this many.", metavar="N")
    ] = 20,
) -> None:
    """List the runs, newest first: id, topic, state, sections, duration, start time."""
    settings = _settings()

    async def go(ready: Settings) -> list[RunEntry]:
        async with open_memory(ready.memory_config(), "runs") as m:
            return await m.runs.newest(limit)

    with _servers(settings) as ready:
        entries = anyio.run(go, ready)
    if not entries:
        console.print("no runs yet; start one with: agentmem run")
        return
    table = Table(expand=False)
    for column in ("run", "topic", "state", "sections", "duration"):
        table.add_column(column, overflow="fold")
    table.add_column("started (UTC)", no_wrap=True)
    for entry in entries:
        seconds = entry.seconds
        state = {"completed": "[green]completed[/]", "failed": "[red]failed[/]"}.get(
            entry.state, entry.state
        )
        table.add_row(
            entry.run_id,
            entry.topic if len(entry.topic) <= 32 else f"{entry.topic[:31]}…",
            state,
            f"{entry.approved}/{entry.sections}" if entry.sections else "-",
            "-" if seconds is None else f"{seconds:.1f} s",
            f"{entry.started_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)


@app.command(short_help="Show a run: sections, failures, versions.")
@_one_line_errors
def inspect(
    run_id: Annotated[
        str, typer.Argument(help="The run to look at.", callback=_run_id, metavar="RUN_ID")
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
) -> None:
    """Show a run: its sections, why it failed if it did, and on request more detail."""
    settings = _settings()
    with _servers(settings) as ready:
        found = anyio.run(
            lambda: show_run(
                ready, run_id, console, facts=facts, events=events, section=section, full=full
            )
        )
    if not found:
        _unknown_run(run_id)


def _unknown_run(run_id: str) -> NoReturn:
    _fail(
        f"run {run_id!r} has no events here; `agentmem runs` lists the runs "
        "(are REDIS_URL and AGENTMEM_DATA_DIR the same as for the run?)"
    )


@app.command("dead-letters", short_help="List the handoffs the agents gave up on.")
@_one_line_errors
def dead_letters(
    run_id: Annotated[
        str, typer.Argument(help="The run to look at.", callback=_run_id, metavar="RUN_ID")
    ],
    full: Annotated[
        bool, typer.Option("--full", help="Show what each one carried in full.")
    ] = False,
) -> None:
    """List the handoffs the agents of a run gave up on, and why."""
    settings = _settings()
    with _servers(settings) as ready:
        letters = anyio.run(lambda: read_dead_letters(ready, run_id))
    if letters is None:
        _unknown_run(run_id)
    show_dead_letters(console, letters, full=full)


@app.command(short_help="Hand a given-up handoff to the agents again.")
@_one_line_errors
def requeue(
    run_id: Annotated[
        str, typer.Argument(help="The run it belongs to.", callback=_run_id, metavar="RUN_ID")
    ],
    dead_letter_id: Annotated[
        str, typer.Argument(help="The id `agentmem dead-letters` shows for it.", metavar="ID")
    ],
) -> None:
    """Hand a handoff the agents gave up on to them again (after fixing its cause)."""
    settings = _settings()

    async def go(ready: Settings) -> str | None:
        async with open_memory(ready.memory_config(), run_id) as m:
            log = m.events(RUN_STREAM)
            if dead_letter_id not in {d.dead_letter_id for d in await log.dead_letters(1000)}:
                return None
            return await log.requeue(dead_letter_id)

    with _servers(settings) as ready:
        entry_id = anyio.run(go, ready)
    if entry_id is None:
        _fail(
            f"run {run_id!r} has no dead letter {dead_letter_id!r}; "
            f"`agentmem dead-letters {run_id}` lists them"
        )
    console.print(
        f"requeued as entry {entry_id}: the agents will take it up again", highlight=False
    )


@app.command(short_help="Delete what a run stored.")
@_one_line_errors
def forget(
    run_id: Annotated[
        str, typer.Argument(help="The run to delete.", callback=_run_id, metavar="RUN_ID")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete everything a run stored in Redis and PostgreSQL (its report files are kept)."""
    if not yes:
        typer.confirm(f"Delete everything run {run_id} stored?", abort=True)
    settings = _settings()

    async def go(ready: Settings) -> tuple[int, int]:
        async with open_memory(ready.memory_config(), run_id) as m:
            dropped = await m.drop()
            await m.runs.remove(run_id)
            return dropped

    with _servers(settings) as ready:
        keys, versions = anyio.run(go, ready)
    console.print(f"run {run_id}: deleted {keys} Redis keys and {versions} document versions")


@app.command(short_help="Show the runs in a web browser.")
@_one_line_errors
def serve(
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port to listen on.", metavar="PORT")
    ] = DEFAULT_PORT,
) -> None:
    """Serve a web view of the runs on 127.0.0.1 until Ctrl-C: each run's sections, versions,
    reviews, facts, timeline and dead letters, updated live while a run goes on."""
    settings = _settings()
    with _servers(settings) as ready:
        console.print(f"web view on http://{HOST}:{port}/ (Ctrl-C stops it)", highlight=False)
        uvicorn.run(  # stops on Ctrl-C, then the local servers stop
            create_app(ready.memory_config(client_name="agentmem:web")),
            host=HOST,
            port=port,
            log_level="warning",
        )


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)  # reconnects after an outage
    # The supervisor tells the person about each restart itself; its log line would repeat it.
    logging.getLogger("orchestrator.supervisor").setLevel(logging.ERROR)
    app()


if __name__ == "__main__":
    main()
