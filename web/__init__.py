"""The local web view of the runs (``agentmem serve``): runs, sections, facts, timeline."""

from web.app import DEFAULT_PORT, HOST, create_app

__all__ = ["DEFAULT_PORT", "HOST", "create_app"]
