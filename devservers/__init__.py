"""Local development servers: real Redis-compatible and PostgreSQL servers from PyPI wheels.

Used by the CLI, the tests, chaos and the benchmarks when ``REDIS_URL`` / ``DATABASE_URL`` are
unset. The memory library never starts servers; it only connects to the URLs it is given.
"""

from devservers.process import die_with_parent, free_port
from devservers.servers import (
    EmbeddedPostgres,
    EmbeddedRedis,
    ServerStartError,
    ServerUrls,
    local_servers,
)

__all__ = [
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "ServerStartError",
    "ServerUrls",
    "die_with_parent",
    "free_port",
    "local_servers",
]
