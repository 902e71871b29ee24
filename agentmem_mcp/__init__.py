"""An MCP server over the memory layer (the ``mcp`` extra): ``agentmem mcp`` on stdio, and
``/mcp`` (streamable HTTP) on ``agentmem serve``.

- :func:`create_server`: the tools (facts, locks, documents, events, status), namespaced.
- :func:`serve_stdio`: one client on stdin/stdout.
- :class:`HttpEndpoint`: the streamable-HTTP endpoint for a Starlette app.

See docs/integrations.md for the tools and how to point a client at them.
"""

from agentmem.mcp.tools import create_server
from agentmem.mcp.transports import HttpEndpoint, serve_stdio

__all__ = ["HttpEndpoint", "create_server", "serve_stdio"]
