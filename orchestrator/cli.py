"""``agentmem``: run the agents on a topic, and inspect what a run left behind.

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
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.text import Text

from agents.__main__ import serve_agent
from agents.protocol import RUN_STREAM, Role
from agents.settings import Settings
from devservers import local_servers
from memory import (
    AgentMemoryError,
    DeadLetter,
    InvalidConfigError,
    InvalidIdError,
    leaves,
    open_memory,
)
from memory.keys import validate_id
from orchestrator.inspection import show_run
from orchestrator.progress import Progress
from orchestrator.run import new_run_id, run_report
from orchestrator.sources import DEFAULT_TOPIC, PROJECT_SOURCES, load_sources

P = ParamSpec("P")

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False
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
def _servers(settings: Settings) -> Iterator[Settings]:
    """The settings with server URLs: the configured ones, or local servers started now."""
    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    database_url = settings.database_url.get_secret_value() if settings.database_url else None
    missing = [
        name for name, url in (("Redis", redis_url), ("PostgreSQL", database_url)) if not url
    ]
    if missing:
        unset = "/".join("REDIS_URL" if n == "Redis" else "DATABASE_URL" for n in missing)
        console.print(f"[dim]starting local {' and '.join(missing)} ({unset} unset)…[/]")
    data_dir = Path(settings.data_dir) / "servers"
    started = time.monotonic()
    with local_servers(
        redis_url, database_url, data_dir, redis_appendfsync=settings.redis_appendfsync
    ) as urls:
        if missing:
            console.print(f"[dim]servers ready in {time.monotonic() - started:.1f} s[/]")
        yield settings.model_copy(
            update={
                "redis_url": SecretStr(urls.redis_url),
                "database_url": SecretStr(urls.database_url),
            }
        )


@app.command()
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
        with _servers(settings) as ready:
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
    progress.message(
        f"done in {t['total']:.1f} s after servers were up (connect {t['connect']:.1f} s, "
        f"agents {t['agents']:.1f} s, of which agents waited {t['llm_by_agents']:.2f} s "
        f"for the LLM in total); record: {result.record_path}"
    )
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


@app.command()
@_one_line_errors
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
@_one_line_errors
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
    async with open_memory(settings.memory_config(), run_id) as m:
        return await m.events(RUN_STREAM).dead_letters(count=1000)


@app.command()
@_one_line_errors
def requeue(
    run_id: Annotated[str, typer.Argument(callback=_run_id)],
    dead_letter_id: Annotated[str, typer.Argument(help="Id shown by `agentmem dead-letters`.")],
) -> None:
    """Put a dead-lettered handoff back on the run's stream."""
    settings = _settings()

    async def go(ready: Settings) -> str:
        async with open_memory(ready.memory_config(), run_id) as m:
            return await m.events(RUN_STREAM).requeue(dead_letter_id)

    with _servers(settings) as ready:
        entry_id = anyio.run(go, ready)
    console.print(f"requeued as entry {entry_id}")


@app.command()
@_one_line_errors
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
        async with open_memory(ready.memory_config(), run_id) as m:
            return await m.drop()

    with _servers(settings) as ready:
        keys, versions = anyio.run(go, ready)
    console.print(f"run {run_id}: deleted {keys} Redis keys and {versions} document versions")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)  # reconnects after an outage
    app()


if __name__ == "__main__":
    main()
