"""``agentmem mcp``: the memory layer as an MCP server on stdin/stdout (:mod:`agentmem_mcp`)."""

from __future__ import annotations

from typing import Annotated

import typer

from agentmem.cli.common import app, fail, one_line_errors, servers, settings_from_env


@app.command(short_help="Serve the memory layer to an MCP client on stdin/stdout.")
@one_line_errors
def mcp(
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            help="Serve only this namespace (repeat for more); default: any.",
            metavar="NAME",
        ),
    ] = None,
) -> None:
    """Serve facts, locks, versioned documents, events and agent status to one MCP client
    (Claude Desktop, Cursor, ...) on stdin/stdout, until it closes them. See
    docs/integrations.md."""
    import anyio

    from agentmem.memory import validate_id

    try:
        from agentmem.mcp import serve_stdio
    except ImportError as exc:
        fail(f"the MCP server needs the mcp extra ({exc}): pip install 'agentmem[mcp]'", code=2)
    allowed = None if not namespace else frozenset(validate_id(n, "namespace") for n in namespace)
    settings = settings_from_env()
    with servers(settings) as ready:
        config = ready.memory_config(client_name="agentmem:mcp")
        anyio.run(lambda: serve_stdio(config, namespaces=allowed))
