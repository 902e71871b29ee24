"""``agentmem servers up|down|status``: the checkout's shared local servers, by hand.

Every command that needs servers and has no ``REDIS_URL`` / ``DATABASE_URL`` attaches to the
checkout's local servers, starting them if nobody runs them, and they stop when the last user
leaves (:mod:`devservers.shared`). ``servers up`` keeps them up until ``servers down``, and
prints their URLs for a library user's own scripts: ``export $(agentmem servers up)``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from agentmem.cli.common import (
    console,
    errors,
    one_line_errors,
    servers_dir,
    settings_from_env,
)

servers_app = typer.Typer(
    help="Start, stop or show the checkout's local Redis and PostgreSQL servers.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@servers_app.command()
@one_line_errors
def up() -> None:
    """Start the local servers (or keep those running) until `agentmem servers down`.

    Prints REDIS_URL=... and DATABASE_URL=... on stdout: `export $(agentmem servers up)`.
    """
    from agentmem.devservers.shared import pin

    settings = settings_from_env()
    shared = pin(servers_dir(settings), appendfsync=settings.redis_appendfsync)
    how = "started" if shared.started else "already running"
    errors().print(f"[dim]local servers {how}; `agentmem servers down` stops them[/]")
    typer.echo(f"REDIS_URL={shared.urls.redis_url}")
    typer.echo(f"DATABASE_URL={shared.urls.database_url}")


@servers_app.command()
@one_line_errors
def down(
    force: Annotated[
        bool, typer.Option("--force", help="Stop them now, even while commands use them.")
    ] = False,
) -> None:
    """Let the local servers stop: now if no command uses them, else when the last one ends."""
    from agentmem.devservers.shared import read_state, stop_shared, unpin

    directory = servers_dir(settings_from_env())
    if read_state(directory.resolve()) is None:
        console().print("no local servers are running")
        return
    still = unpin(directory)
    if force or not still:
        stop_shared(directory)
        console().print("local servers stopped")
        return
    console().print(
        f"local servers still used by {len(still)} command(s) (pid {', '.join(still)}); "
        "they stop when the last one ends (--force stops them now)",
        soft_wrap=True,
    )


@servers_app.command()
@one_line_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Show whether the local servers run, their URLs and pids, and who uses them."""
    from agentmem.devservers.shared import read_state, users

    directory = servers_dir(settings_from_env()).resolve()
    state = read_state(directory)
    leases = users(directory) if state is not None else []
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "running": state is not None,
                    "redis_url": state.redis_url if state else None,
                    "database_url": state.database_url if state else None,
                    "keeper_pid": state.keeper_pid if state else None,
                    "server_pids": state.server_pids if state else [],
                    "pinned": "pinned" in leases,
                    "users": [int(u) for u in leases if u != "pinned"],
                    "data_dir": str(directory),
                }
            )
        )
        return
    if state is None:
        console().print(f"no local servers are running for {directory}", soft_wrap=True)
        return
    pinned = "pinned" in leases
    pids = [u for u in leases if u != "pinned"]
    console().print(
        f"REDIS_URL={state.redis_url}\nDATABASE_URL={state.database_url}", highlight=False
    )
    console().print(
        f"kept by pid {state.keeper_pid} (servers {', '.join(map(str, state.server_pids))}); "
        f"used by {len(pids)} command(s){' and pinned by servers up' if pinned else ''}; "
        f"data in {directory}",
        soft_wrap=True,
        highlight=False,
    )
