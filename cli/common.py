"""What every ``agentmem`` command shares: the app, settings, one-line errors, local servers."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, ParamSpec

import typer

# Only what parsing the command line needs is imported here: ``agentmem --help`` stays quick.
# The rest (rich, pydantic, the agents, the memory layer, the local servers) is imported by
# the command that uses it.
if TYPE_CHECKING:
    from rich.console import Console

    from agentmem.agents import Settings

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


@functools.cache
def console() -> Console:
    """Standard output, through rich (created on first use)."""
    from rich.console import Console

    class Stdout(Console):
        def on_broken_pipe(self) -> None:  # rich's own exits 1
            stdout_closed()

    return Stdout()


@functools.cache
def errors() -> Console:
    """Standard error, through rich (created on first use)."""
    from rich.console import Console

    return Console(stderr=True)


class LLMChoice(StrEnum):
    AUTO = "auto"
    STUB = "stub"
    OPENAI = "openai"


def settings_from_env(**overrides: object) -> Settings:
    """The settings from the environment, with this command's options applied and checked."""
    from pydantic import ValidationError

    from agentmem.agents import Settings
    from agentmem.memory import InvalidConfigError

    try:
        settings = Settings().model_copy(update=overrides)
        settings.check_llm()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        fail(f"invalid configuration in the environment: {problems}", code=2)
    except InvalidConfigError as exc:
        fail(str(exc), code=2)
    return settings


def fail(message: str, code: int = 1) -> NoReturn:
    from rich.text import Text

    errors().print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    raise typer.Exit(code)


def one_line_errors(command: Callable[P, None]) -> Callable[P, None]:
    """End the command with one line on stderr and exit 1 on any error, never a traceback;
    a closed standard output (the reader went away) ends it quietly with exit 0.

    Project errors (and OS errors) are expected: their message is the line. Anything else is a
    bug: it is named as unexpected, and ``AGENTMEM_DEBUG=1`` shows its traceback.
    """

    @functools.wraps(command)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter, typer.exceptions.TyperException):
            raise
        except BrokenPipeError:
            stdout_closed()
        except Exception as exc:
            from agentmem.memory import AgentMemoryError, leaves

            inside = leaves(exc)
            known = all(isinstance(e, AgentMemoryError | OSError) for e in inside)
            if not known and os.environ.get("AGENTMEM_DEBUG"):
                raise
            message = "; ".join(_one_line(e) for e in inside)
            if not known:
                message = f"unexpected error: {message} (AGENTMEM_DEBUG=1 shows the traceback)"
            fail(message)

    return guarded


def stdout_closed() -> NoReturn:
    """End quietly with exit 0: whoever read our output stopped (``agentmem inspect | head``).

    Standard output is pointed at /dev/null first, so that flushing what is left of it on the
    way out fails no more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise SystemExit(0)  # not an Exception: nothing on the way out mistakes it for an error


def _one_line(exc: BaseException) -> str:
    from agentmem.memory import AgentMemoryError

    text = " ".join(str(exc).split())
    if isinstance(exc, AgentMemoryError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def checked_topic(value: str) -> str:
    """The topic stripped: 1 to 500 characters on one line (it is the report's title)."""
    from pydantic import ValidationError

    from agentmem.protocol.events import RunRequested, SourceDoc

    topic = value.strip()
    try:
        RunRequested(topic=topic, sources=[SourceDoc(name="-", text="-")])
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        msg = f"the topic {problem} (1 to 500 characters, one line)"
        raise typer.BadParameter(msg) from exc
    return topic


def checked_run_id(value: str) -> str:
    from agentmem.memory import InvalidIdError, validate_id

    try:
        return validate_id(value, "run id")
    except InvalidIdError as exc:
        raise typer.BadParameter(str(exc)) from exc


@contextmanager
def servers(settings: Settings, *, quiet: bool = False) -> Iterator[Settings]:
    """The settings with server URLs: the configured ones, or the checkout's shared local
    servers (:mod:`devservers.shared`): started now if no other command runs them (said on
    stderr unless ``quiet``), else attached to."""
    from pydantic import SecretStr

    redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
    database_url = settings.database_url.get_secret_value() if settings.database_url else None
    if redis_url and database_url:
        yield settings
        return
    from agentmem.devservers.shared import shared_servers

    missing = [
        name for name, url in (("Redis", redis_url), ("PostgreSQL", database_url)) if not url
    ]
    unset = "/".join("REDIS_URL" if n == "Redis" else "DATABASE_URL" for n in missing)
    started = time.monotonic()

    def announce() -> None:
        if not quiet:
            errors().print(f"[dim]starting local Redis and PostgreSQL ({unset} not set)…[/]")

    with shared_servers(
        servers_dir(settings), appendfsync=settings.redis_appendfsync, on_start=announce
    ) as shared:
        if shared.started and not quiet:
            errors().print(f"[dim]servers ready in {time.monotonic() - started:.1f} s[/]")
        yield settings.model_copy(
            update={
                "redis_url": SecretStr(redis_url or shared.urls.redis_url),
                "database_url": SecretStr(database_url or shared.urls.database_url),
            }
        )


def servers_dir(settings: Settings) -> Path:
    """Where the checkout's local servers keep their data, state and leases."""
    return Path(settings.data_dir) / "servers"
