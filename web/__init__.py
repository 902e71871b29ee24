"""The local web view of the runs (``agentmem serve``): runs, sections, facts, timeline.

``create_app`` (starlette and the memory layer) is imported on first use, so the ``agentmem``
command can show the default port without importing the web app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentmem.web.app import create_app

DEFAULT_PORT = 8765
HOST = "127.0.0.1"

__all__ = ["DEFAULT_PORT", "HOST", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from agentmem.web.app import create_app

        return create_app
    msg = f"module 'web' has no attribute {name!r}"
    raise AttributeError(msg)
