"""``agentmem``: run the agents on a topic, and inspect what a run left behind.

Configuration comes from the environment (see ``agents/settings.py`` and the README); the
options here are per run. Without ``REDIS_URL`` / ``DATABASE_URL`` the commands start local
Redis and PostgreSQL servers in the data directory and stop them when they exit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import anyio
import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console

from agents.protocol import RUN_STREAM
from agents.settings import Settings
from devservers import local_servers
from memory.agent_memory import RedisAgentMemory
from memory.consumer import DeadLetter
from memory.errors import AgentMemoryError, InvalidIdError, leaves
from memory.events import EventStore
from memory.keys import validate_id
from memory.namespace import drop_redis_namespace
from memory.shared_db import SharedAgentDB
from orchestrator.inspection import show_run
from orchestrator.progress import Progress
from orchestrator.run import new_run_id, run_report
from orchestrator.sources import DEFAULT_TOPIC, PROJECT_SOURCES, load_sources

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console()
errors = Console(stderr=True)


class LLMChoice(StrEnum):
    AUTO = "auto"
    STUB = "stub"
    OPENAI = "openai"


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail(f"invalid configuration in the environment: {problems}", code=2)


def _fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _fail_on_known(exc: BaseException) -> NoReturn:
    """Exit with the message of every project error inside ``exc``; re-raise anything else."""
    errors_inside = leaves(exc)
    if all(isinstance(e, AgentMemoryError | OSError) for e in errors_inside):
        _fail("; ".join(str(e) for e in errors_inside))
    raise exc


def _run_id(value: str) -> str:
    try:
        return validate_id(value, "run id")
    except InvalidIdError as exc:
        raise typer.BadParameter(str(exc)) from exc


@contextmanager
def _servers(settings: Settings) -> Iterator[Settings]:
    """The settings with server URLs: the configured ones, or local servers started now."""
    database_url = settings.database_url.get_secret_value() if settings.database_url else None
    if not (settings.redis_url and database_url):
        console.print("[dim]starting local Redis and PostgreSQL (REDIS_URL/DATABASE_URL unset)…[/]")
    data_dir = Path(settings.data_dir) / "servers"
    started = time.monotonic()
    with local_servers(settings.redis_url, database_url, data_dir) as urls:
        if not (settings.redis_url and database_url):
            console.print(f"[dim]servers ready in {time.monotonic() - started:.1f} s[/]")
        yield settings.model_copy(
            update={"redis_url": urls.redis_url, "database_url": SecretStr(urls.database_url)}
        )


@app.command()
def run(
    topic: Annotated[str, typer.Option(help="What the report is about.")] = DEFAULT_TOPIC,
    sources: Annotated[
        Path, typer.Option(help="Folder of .md/.txt source files.", show_default=False)
    ] = PROJECT_SOURCES,
    writers: Annotated[int, typer.Option(min=1, max=8, help="Writing agent processes.")] = 1,
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
    settings = _settings()
    updates: dict[str, object] = {}
    if llm is not None:
        updates["llm"] = llm.value
    if timeout is not None:
        updates["run_timeout_seconds"] = timeout
    settings = settings.model_copy(update=updates)
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
    progress.message(f"run [bold]{run_id}[/]: {len(docs)} sources, {writers} writer(s), {llm_name}")
    try:
        with _servers(settings) as ready:
            result = anyio.run(
                lambda: run_report(
                    ready,
                    run_id=run_id,
                    topic=topic,
                    sources=docs,
                    writers=writers,
                    progress=progress,
                )
            )
    except KeyboardInterrupt:
        _fail("interrupted; agents and servers stopped", code=130)
    except Exception as exc:
        _fail_on_known(exc)
    t = result.timings
    progress.message(
        f"done in {t['total']:.1f} s after servers were up (connect {t['connect']:.1f} s, "
        f"agents {t['agents']:.1f} s, of which agents waited {t['llm_by_agents']:.2f} s "
        f"for the LLM in total); record: {result.record_path}"
    )
    console.print(f"Report: {result.report_path}", soft_wrap=True, highlight=False)


@app.command()
def inspect(
    run_id: Annotated[str, typer.Argument(help="The run to inspect.", callback=_run_id)],
    facts: Annotated[bool, typer.Option("--facts", help="List the run's facts.")] = False,
    events: Annotated[bool, typer.Option("--events", help="List the run's events.")] = False,
    section: Annotated[str | None, typer.Option(help="List every version of one section.")] = None,
) -> None:
    """Show a finished run: its sections, and on request its facts, events or versions."""
    settings = _settings()
    with _servers(settings) as ready:
        found = anyio.run(
            lambda: show_run(ready, run_id, console, facts=facts, events=events, section=section)
        )
    if not found:
        _fail(
            f"run {run_id!r} has no events here; "
            "are REDIS_URL and AGENTMEM_DATA_DIR the same as for the run?"
        )


@app.command("dead-letters")
def dead_letters(run_id: Annotated[str, typer.Argument(callback=_run_id)]) -> None:
    """List the handoffs of a run that were dead-lettered, with the reason."""
    settings = _settings()
    with _servers(settings) as ready:
        letters = anyio.run(lambda: _dead_letters(ready, run_id))
    if not letters:
        console.print("no dead letters")
    for letter in letters:
        console.print(
            f"[bold]{letter.dead_letter_id}[/] entry {letter.entry_id} "
            f"group {letter.group}: {letter.reason}",
            highlight=False,
        )
        console.print(f"  {letter.fields}", markup=False)


async def _dead_letters(settings: Settings, run_id: str) -> list[DeadLetter]:
    assert settings.redis_url
    async with EventStore.from_url(settings.redis_url, namespace=run_id, stream=RUN_STREAM) as log:
        return await log.dead_letters(count=1000)


@app.command()
def requeue(
    run_id: Annotated[str, typer.Argument(callback=_run_id)],
    dead_letter_id: Annotated[str, typer.Argument(help="Id shown by `agentmem dead-letters`.")],
) -> None:
    """Put a dead-lettered handoff back on the run's stream."""
    settings = _settings()

    async def go(ready: Settings) -> str:
        assert ready.redis_url
        async with EventStore.from_url(ready.redis_url, namespace=run_id, stream=RUN_STREAM) as log:
            return await log.requeue(dead_letter_id)

    try:
        with _servers(settings) as ready:
            entry_id = anyio.run(go, ready)
    except Exception as exc:
        _fail_on_known(exc)
    console.print(f"requeued as entry {entry_id}")


@app.command()
def forget(
    run_id: Annotated[str, typer.Argument(help="The run to delete.", callback=_run_id)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a run: its facts, events, statuses, locks (Redis) and documents (PostgreSQL).

    Reports and records already written to the reports folder are kept.
    """
    if not yes:
        typer.confirm(f"Delete everything run {run_id} stored?", abort=True)
    settings = _settings()

    async def go(ready: Settings) -> tuple[int, int]:
        assert ready.redis_url is not None
        assert ready.database_url is not None
        async with (
            RedisAgentMemory.from_url(ready.redis_url, namespace=run_id) as memory,
            await SharedAgentDB.connect(ready.database_url.get_secret_value(), run_id) as db,
        ):
            return await drop_redis_namespace(memory.client, run_id), await db.drop_all()

    try:
        with _servers(settings) as ready:
            keys, versions = anyio.run(go, ready)
    except Exception as exc:
        _fail_on_known(exc)
    console.print(f"run {run_id}: deleted {keys} Redis keys and {versions} document versions")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)  # reconnects after an outage
    app()


if __name__ == "__main__":
    main()
