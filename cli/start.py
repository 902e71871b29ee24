"""``agentmem run`` and ``agentmem agent``: start a run, or join one from this host."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from agentmem.cli.common import (
    LLMChoice,
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
from agentmem.protocol.roles import Role

# The commands import what they run when they run (see cli.common).

_T = TypeVar("_T")


@app.command(short_help="Run the agents on the sources and write the report.")
@one_line_errors
def run(
    topic: Annotated[
        str, typer.Option(help="What the report is about (one line).", callback=checked_topic)
    ] = DEFAULT_TOPIC,
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
        typer.Option(
            help="Run id (default: generated).", callback=lambda v: v and checked_run_id(v)
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="Fail the run after this many seconds.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the report path.")
    ] = False,
) -> None:
    """Run the research, writing and review agents on the sources and write the report."""
    import anyio

    from agentmem.agents.llm_choice import uses_stub
    from agentmem.memory import AgentMemoryError
    from agentmem.orchestrator.launcher import AgentLauncher
    from agentmem.orchestrator.lifecycle import new_run_id, run_report
    from agentmem.orchestrator.progress import Progress
    from agentmem.orchestrator.sources import load_sources

    updates: dict[str, object] = {}
    if llm is not None:
        updates["llm"] = llm.value
    if timeout is not None:
        updates["run_timeout_seconds"] = timeout
    settings = settings_from_env(**updates)
    try:
        docs = load_sources(sources)
    except AgentMemoryError as exc:
        fail(str(exc), code=2)
    run_id = run_id or new_run_id()
    progress = Progress(None if quiet else console(), quiet=quiet)
    llm_name = "stub LLM" if uses_stub(settings) else f"{settings.llm_model} via OpenAI API"
    progress.message(
        f"run [bold]{run_id}[/]: {len(docs)} sources, {researchers} researcher(s), "
        f"{writers} writer(s), {reviewers} reviewer(s), {llm_name}"
    )
    try:
        # The zygote that forks the agents is a fork of this process, made now: the agent code
        # is imported already, and no server, thread or event loop exists yet.
        with AgentLauncher.fork() as launcher, servers(settings, quiet=quiet) as ready:
            result = anyio.run(
                lambda: _interruptible(
                    lambda: run_report(
                        ready,
                        run_id=run_id,
                        topic=topic,
                        sources=docs,
                        writers=writers,
                        progress=progress,
                        reviewers=reviewers,
                        researchers=researchers,
                        launcher=launcher,
                    )
                )
            )
    except KeyboardInterrupt:
        fail("interrupted; agents and servers stopped", code=130)
    t = result.timings
    if quiet:  # the path alone, without rich (see orchestrator.progress)
        typer.echo(str(result.report_path))
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
        console().print(f"{name}: {path}", soft_wrap=True, highlight=False)
    console().print(f"Report: {result.report_path}", soft_wrap=True, highlight=False)


@app.command()
def agent(
    role: Annotated[Role, typer.Argument(help="Which agent to run.")],
    run: Annotated[str, typer.Option(help="The run to join.", callback=checked_run_id)],
    instance: Annotated[
        int, typer.Option(min=1, help="Instance number, unique within the role in the run.")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Join a run from this host as one more agent; it stops by itself when the run ends.

    It uses the run's servers: REDIS_URL and DATABASE_URL, or when they are unset the
    checkout's shared local servers (those `agentmem run` uses when they are unset too).
    """
    if log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise typer.BadParameter(log_level, param_hint="--log-level")
    from agentmem.agents.__main__ import serve_agent

    with servers(settings_from_env()) as settings:
        code = serve_agent(role, run, instance, log_level.upper(), settings=settings)
    raise typer.Exit(code)


async def _interruptible(main: Callable[[], Awaitable[_T]]) -> _T:
    """``main()``, cancelled by Ctrl-C (SIGINT), which then ends in ``KeyboardInterrupt``
    once ``main`` has cleaned up, even if its clean-up ended normally: an interrupted run
    never looks completed (exit 0). ``main``'s own errors come out as they are."""
    import anyio  # deferred, as every import of the run

    interrupted = False
    result: list[_T] = []
    error: list[BaseException] = []
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT) as signals:
                async for _ in signals:
                    interrupted = True
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch)
        try:
            result.append(await main())
        except anyio.get_cancelled_exc_class():
            raise  # the task group's own (or an outer) cancellation
        except BaseException as exc:  # raised as it is, after the group
            error.append(exc)
        finally:
            tg.cancel_scope.cancel()
    if interrupted or (not result and not error):
        raise KeyboardInterrupt
    if error:
        raise error[0]
    return result[0]
