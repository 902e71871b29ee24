"""Local development servers: real Redis-compatible and PostgreSQL servers from PyPI wheels.

Used by the CLI, the tests, chaos and the benchmarks when ``REDIS_URL`` / ``DATABASE_URL`` are
unset. The memory library never starts servers; it only connects to the URLs it is given.
"""

from devservers.errors import ServerStartError
from devservers.process import die_with_parent, free_port
from devservers.servers import (
    APPENDFSYNC_POLICIES,
    EmbeddedPostgres,
    EmbeddedRedis,
    ServerUrls,
    local_servers,
)

__all__ = [
    "APPENDFSYNC_POLICIES",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "ServerStartError",
    "ServerUrls",
    "die_with_parent",
    "free_port",
    "local_servers",
]
