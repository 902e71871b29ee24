"""Local development servers: real Redis-compatible and PostgreSQL servers from PyPI wheels.

Used by the CLI, the tests, chaos and the benchmarks when ``REDIS_URL`` / ``DATABASE_URL`` are
unset. :func:`local_servers` starts a set owned by the caller; :func:`shared_servers` attaches
to the checkout's set, shared by every command (:mod:`devservers.shared`). The memory library
never starts servers; it only connects to the URLs it is given.
"""

from agentmem.devservers.errors import ServerStartError
from agentmem.devservers.ports import free_port
from agentmem.devservers.servers import (
    APPENDFSYNC_POLICIES,
    EmbeddedPostgres,
    EmbeddedRedis,
    ServerUrls,
    local_servers,
)
from agentmem.devservers.shared import SharedServers, shared_servers

__all__ = [
    "APPENDFSYNC_POLICIES",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "ServerStartError",
    "ServerUrls",
    "SharedServers",
    "free_port",
    "local_servers",
    "shared_servers",
]
