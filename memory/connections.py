"""Connections: the settings for reaching Redis and PostgreSQL, and the clients made from them.

Every client the project creates is made here, with explicit timeouts, so that no call waits
on a silent server for ever:

- Redis: ``connect_timeout`` bounds opening a connection, ``command_timeout`` bounds waiting
  for each reply. The clients retry nothing by themselves, standalone or cluster (redis-py's
  own retry would send a write again after a dropped reply, and a cluster client would also
  resend after a timeout): the one retry, on a dropped connection and only for operations
  marked idempotent, is made at the memory boundary (:mod:`memory._boundary`). A cluster
  client still follows MOVED, ASK and TRYAGAIN replies, which say the command did not run.
- PostgreSQL: a one-statement call on the pool takes a connection (a free one, or a new one)
  within ``connect_timeout`` and runs within ``command_timeout``: a call on a pooled
  connection to a silent server fails after ``command_timeout``, and its connection is closed
  rather than kept for a cancel request the silence would swallow (:class:`_BoundedPool`).
  Every call of :class:`~memory.shared_db.SharedAgentDB` is also cancelled after
  ``connect_timeout + command_timeout``, which bounds its calls made of several statements.

Bad URLs and refused credentials raise :class:`InvalidConfigError`; an unreachable server
raises :class:`ServerUnavailableError`. Messages never include a password, whether in the
user part of a URL or in its query string (:func:`redact`).
"""

from __future__ import annotations

import functools
import os
import re
import secrets
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar
from urllib.parse import unquote_plus, urlsplit

import asyncpg
import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentmem.memory._boundary import POSTGRES_DOWN
from agentmem.memory.errors import InvalidConfigError, ServerUnavailableError
from agentmem.memory.limits import Limits

# Every store takes either: one client of a standalone server, or one of a Redis Cluster.
RedisClient = redis.Redis | RedisCluster

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_COMMAND_TIMEOUT = 5.0

T = TypeVar("T")

_CLIENT_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_AUTH_ERRORS = (
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """Where the servers are and how long to wait for them."""

    redis_url: str = field(repr=False)
    database_url: str | None = field(default=None, repr=False)
    # a streaming replica of database_url for reads that tolerate lag; never migrated
    database_read_url: str | None = field(default=None, repr=False)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    pool_max_size: int = 10
    client_name: str = "agentmem"  # shown by CLIENT LIST / pg_stat_activity, with a pool id
    redis_cluster: bool | None = None  # None: ask the server (INFO cluster) when connecting
    limits: Limits = field(default_factory=Limits)  # size caps the stores enforce

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "command_timeout"):
            value = getattr(self, name)
            if not 0 < value <= 3600:
                msg = f"{name} must be more than 0 and at most 3600 seconds, got {value}"
                raise InvalidConfigError(msg)
        if self.pool_max_size < 1:
            msg = f"pool_max_size must be at least 1, got {self.pool_max_size}"
            raise InvalidConfigError(msg)

        if not _CLIENT_NAME.fullmatch(self.client_name):
            msg = f"client_name {self.client_name!r} must be 1-64 of A-Z a-z 0-9 . _ : -"
            raise InvalidConfigError(msg)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, client_name: str = "agentmem"
    ) -> MemoryConfig:
        """The configuration from the environment variables the README documents.

        ``REDIS_URL`` (required), ``DATABASE_URL``, ``DATABASE_READ_URL``,
        ``AGENTMEM_CONNECT_TIMEOUT_SECONDS``, ``AGENTMEM_COMMAND_TIMEOUT_SECONDS``,
        ``AGENTMEM_MAX_FACT_BYTES`` (a fact's text and its metadata),
        ``AGENTMEM_MAX_EVENT_BYTES`` and ``AGENTMEM_MAX_DOCUMENT_BYTES``; unset ones keep their
        defaults. ``agentmem servers up`` prints ``REDIS_URL`` and ``DATABASE_URL`` for local
        servers. :class:`InvalidConfigError` names the variable that is missing or malformed.
        """
        env = os.environ if environ is None else environ
        redis_url = env.get("REDIS_URL", "").strip()
        if not redis_url:
            msg = (
                "REDIS_URL is not set; set it (and DATABASE_URL) to your servers, or to the "
                "local ones `agentmem servers up` prints"
            )
            raise InvalidConfigError(msg)
        limits = Limits()
        fact_bytes = _env_number(env, "AGENTMEM_MAX_FACT_BYTES", int, limits.fact_text_bytes)
        return cls(
            redis_url=redis_url,
            database_url=env.get("DATABASE_URL") or None,
            database_read_url=env.get("DATABASE_READ_URL") or None,
            connect_timeout=_env_number(
                env, "AGENTMEM_CONNECT_TIMEOUT_SECONDS", float, DEFAULT_CONNECT_TIMEOUT
            ),
            command_timeout=_env_number(
                env, "AGENTMEM_COMMAND_TIMEOUT_SECONDS", float, DEFAULT_COMMAND_TIMEOUT
            ),
            client_name=client_name,
            limits=Limits(
                fact_text_bytes=fact_bytes,
                fact_metadata_bytes=fact_bytes,
                event_payload_bytes=_env_number(
                    env, "AGENTMEM_MAX_EVENT_BYTES", int, limits.event_payload_bytes
                ),
                document_value_bytes=_env_number(
                    env, "AGENTMEM_MAX_DOCUMENT_BYTES", int, limits.document_value_bytes
                ),
            ),
        )

    @property
    def call_deadline(self) -> float:
        """The longest one PostgreSQL call may take: connect, then run."""
        return self.connect_timeout + self.command_timeout


N = TypeVar("N", int, float)


def _env_number(env: Mapping[str, str], name: str, kind: type[N], default: N) -> N:
    """The number in variable ``name``, or ``default`` when it is unset or empty."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        msg = f"{name} must be {'an integer' if kind is int else 'a number'}, got {text!r}"
        raise InvalidConfigError(msg) from None
    if value <= 0:
        msg = f"{name} must be more than 0, got {text!r}"
        raise InvalidConfigError(msg)
    return value


def _reason(exc: BaseException) -> str:
    """A driver's message as a clause of ours: one line, without its closing full stop."""
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


def redact(url: str) -> str:
    """The URL without its secrets (safe for messages and logs); each of a comma list.

    Hidden: the password of the user part, and the value of every query parameter whose
    name holds ``pass``, ``secret``, ``token`` or ``key`` in any case (``?password=``,
    ``?sslpassword=``, ``?auth_token=``, ``?api_key=``).
    """
    if "," in url:
        return ",".join(redact(part) for part in url.split(","))
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:
        return "<unparsable URL>"
    if has_password:
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else "***@"
        parts = parts._replace(netloc=user + netloc)
    if parts.query:
        parts = parts._replace(query="&".join(map(_redact_parameter, parts.query.split("&"))))
    return parts.geturl() if has_password or parts.query else url


_SECRET_PARAMETER = re.compile(r"pass|secret|token|key", re.IGNORECASE)


def _redact_parameter(parameter: str) -> str:
    """``name=***`` for a query parameter whose name says it holds a secret."""
    name, equals, _value = parameter.partition("=")
    if equals and _SECRET_PARAMETER.search(unquote_plus(name)):
        return f"{name}=***"
    return parameter


def connection_name(config: MemoryConfig) -> str:
    """``<client_name>/<pid>/<random>``: names every connection of one client or pool alike,
    so that the server can tell how many clients a process opened."""
    return f"{config.client_name}/{os.getpid()}/{secrets.token_hex(3)}"


@functools.cache
def _driver_identity() -> dict[str, object]:
    """What each connection tells the server it is (``CLIENT SETINFO``), made once per process:
    left to redis-py, every new connection looks the library's version up in the installed
    packages' metadata, a file-system scan paid again by every connection of every process."""
    try:
        from redis.driver_info import DriverInfo  # recent redis-py only
    except ImportError:  # earlier: the same, under the names it had then
        return {"lib_name": "redis-py", "lib_version": metadata.version("redis")}
    return {"driver_info": DriverInfo()}


def _client_options(config: MemoryConfig, **extra: object) -> dict[str, object]:
    return {
        **_driver_identity(),
        **extra,
        "client_name": connection_name(config),
        "socket_connect_timeout": config.connect_timeout,
        "socket_timeout": config.command_timeout,
        # No retry at all (a cluster client takes this for its own loop too, which would also
        # resend after a timeout): a command whose connection dropped may have run, so only
        # the boundary, which knows which operations are idempotent, sends one again.
        "retry": Retry(NoBackoff(), 0),
    }


class _Cluster(RedisCluster):
    """redis-py's cluster client, routing stream reads without asking a server, and
    refreshing its slot map after a pipeline's connection error.

    ``XREAD`` and ``XREADGROUP`` have "movable" keys (after ``STREAMS``), which redis-py finds
    with ``COMMAND GETKEYS`` on the node it first connected to: one more round trip for every
    read, and, once that node is dead, a failure raised before the command reaches a node, so
    the client never learns the new slot map and every later read fails the same way (seen
    after a failover of the node named in ``REDIS_URL``). The keys are where the syntax says.

    A single command that meets a connection error makes the client forget its slot map and
    ask again before the next command; a pipeline did so only when it retried itself, which
    it never does here (no retries). A caller that used only pipelines for a slot whose
    primary died (a durable writer confirming its batch in flight) asked the dead node
    forever, however long ago the replica was promoted. A pipeline's connection error now
    makes the client ask again too.
    """

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused there, as ever
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py does

    async def _determine_slot(self, command: str, *args: Any) -> int:
        if command.upper() in {"XREAD", "XREADGROUP"}:
            words = [arg.upper() if isinstance(arg, str | bytes) else arg for arg in args]
            marker = next((w for w in words if w in {b"STREAMS", "STREAMS"}), None)
            if marker is not None:
                start = words.index(marker) + 1
                keys = args[start : start + (len(args) - start) // 2]
                slots = {self.keyslot(key) for key in keys}
                if len(slots) == 1:
                    return slots.pop()
        return await super()._determine_slot(command, *args)


class _ClusterPipeline(ClusterPipeline):
    """A cluster pipeline after whose connection error the client refreshes its slot map."""

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except (RedisConnectionError, RedisTimeoutError):
            await self.cluster_client.aclose()  # as redis-py after a command's: ask again
            raise


def redis_urls(config: MemoryConfig) -> list[str]:
    """The URLs ``config.redis_url`` names: one server, or several nodes of one Redis Cluster
    separated by commas (``redis://h1:7000,redis://h2:7000``), so that a process can start while
    any one of them is down."""
    urls = [url.strip() for url in config.redis_url.split(",")]
    if not all(urls):
        msg = f"REDIS_URL {redact(config.redis_url)!r} has an empty entry between its commas"
        raise InvalidConfigError(msg)
    return urls


def redis_client(config: MemoryConfig, url: str | None = None, **extra: object) -> redis.Redis:
    """A client of a standalone server at ``url`` (default: the first of ``config.redis_url``);
    it connects on first use.

    ``extra`` options go to redis-py as they are (e.g. ``decode_responses=True``).
    """
    url = url or redis_urls(config)[0]
    try:
        return redis.Redis.from_url(url, **_client_options(config, **extra))  # type: ignore[arg-type]
    except ValueError as exc:
        msg = f"REDIS_URL {redact(url)!r} is not a Redis URL: {exc}"
        raise InvalidConfigError(msg) from exc


async def connect_redis(config: MemoryConfig, **extra: object) -> RedisClient:
    """A connected client for ``config.redis_url``: a cluster client if the server is a node of
    a Redis Cluster (any node will do), else a standalone one.

    Asks the server once (``INFO cluster``) unless ``config.redis_cluster`` says which; a wrong
    URL, refused credentials or a server that is down are reported here. When the URL lists
    several cluster nodes, the first that answers is asked and the others are kept as
    startup nodes; only when none answers is the server reported unavailable.
    """
    urls = redis_urls(config)
    unavailable: ServerUnavailableError | None = None
    for url in urls:
        client = redis_client(config, url, **extra)
        try:
            cluster = await _is_cluster(config, client, url)
        except ServerUnavailableError as exc:
            await client.aclose()
            unavailable = unavailable or exc
            continue
        except BaseException:
            await client.aclose()
            raise
        if not cluster:
            if len(urls) > 1:
                await client.aclose()
                msg = f"REDIS_URL lists {len(urls)} servers; {redact(url)} is not a cluster node"
                raise InvalidConfigError(msg)
            return client
        await client.aclose()
        others = [_node(other) for other in urls if other != url]
        nodes = _Cluster.from_url(url, startup_nodes=others, **_client_options(config, **extra))
        try:
            await _ask(nodes, url, nodes.initialize())
        except BaseException:
            await nodes.aclose()
            raise
        return nodes
    assert unavailable is not None  # every URL was tried, and none answered
    raise unavailable


async def _is_cluster(config: MemoryConfig, client: redis.Redis, url: str) -> bool:
    """Whether the server behind ``client`` is a cluster node (asked unless the config says)."""
    if config.redis_cluster is not None:
        await _ask(client, url, client.ping())
        return config.redis_cluster
    info = await _ask(client, url, client.info("cluster"))
    return bool(info.get("cluster_enabled"))


def _node(url: str) -> ClusterNode:
    """A startup node for one listed URL (the client's credentials and options apply to it)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        msg = f"REDIS_URL {redact(url)!r} is not a Redis URL: {exc}"
        raise InvalidConfigError(msg) from exc
    if not host:
        msg = f"REDIS_URL {redact(url)!r} names no host"
        raise InvalidConfigError(msg)
    return ClusterNode(host, port or 6379)


async def _ask(client: RedisClient, url: str, request: Awaitable[T]) -> T:
    """Await the first request to a server, turning its failures into clear errors."""
    try:
        return await request
    except redis.AuthenticationError as exc:
        msg = f"Redis at {redact(url)} refused the credentials: {_reason(exc)}"
        raise InvalidConfigError(msg) from exc
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        msg = f"cannot reach Redis at {redact(url)}: {_reason(exc)}; start it or fix REDIS_URL"
        raise ServerUnavailableError(msg) from exc
    except redis.RedisError as exc:
        msg = f"Redis at {redact(url)} refused to start a session: {_reason(exc)}"
        raise InvalidConfigError(msg) from exc


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Return a connection to the pool without asyncpg's reset query (``RESET ALL``, ...).

    The stores leave no session state behind (no ``SET``, ``LISTEN`` or session advisory lock
    outlives its call; a transaction left open is still rolled back by asyncpg), so the
    round trip that reset costs on every release is saved.
    """


class _BoundedPool(asyncpg.Pool):
    """A pool whose one-statement calls (``fetch``, ``fetchrow``, ``fetchval``, ``execute``,
    ``executemany``) are bounded piece by piece: taking a connection (a free one, or a new one)
    by the connect timeout, the statement by the command timeout (asyncpg's own).

    A connection whose statement did not finish (it timed out, was cancelled, or lost the
    server) is closed at once instead of going back to the pool: asyncpg would first send the
    server a cancel request on a new connection and wait for it, which through a silent network
    costs a second command timeout before the caller hears anything. A statement the server
    refused leaves its connection in the pool.
    """

    __slots__ = ("_acquire_timeout",)

    def __init__(self, dsn: str, *, acquire_timeout: float, **options: Any) -> None:
        super().__init__(dsn, **options)
        self._acquire_timeout = acquire_timeout

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        connection = await self.acquire(timeout=self._acquire_timeout)
        try:
            return await getattr(connection, method)(*args, **kwargs)
        except BaseException as exc:
            if not isinstance(exc, asyncpg.PostgresError) or isinstance(exc, POSTGRES_DOWN):
                connection.terminate()
            raise
        finally:
            await self.release(connection)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("execute", *args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("executemany", *args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("fetch", *args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("fetchrow", *args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call("fetchval", *args, **kwargs)


async def postgres_pool(config: MemoryConfig, dsn: str, *, lazy: bool = False) -> asyncpg.Pool:
    """A connection pool for ``dsn``, with its first connection open (so errors show now);
    ``lazy``: no connection until the first query (a server that may be down for now)."""
    where = redact(dsn)
    try:
        return await _BoundedPool(
            dsn,
            acquire_timeout=config.connect_timeout,
            min_size=0 if lazy else 1,
            max_size=config.pool_max_size,
            # asyncpg.create_pool's defaults
            max_queries=50_000,
            max_inactive_connection_lifetime=300.0,
            loop=None,
            connection_class=asyncpg.Connection,
            record_class=asyncpg.Record,
            # each connection's
            timeout=config.connect_timeout,
            command_timeout=config.command_timeout,
            server_settings={"application_name": connection_name(config)},
            reset=_keep_session,
        )
    except _AUTH_ERRORS as exc:
        msg = f"PostgreSQL at {where} refused the connection: {_reason(exc)}; fix DATABASE_URL"
        raise InvalidConfigError(msg) from exc
    except (
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.InterfaceError,
    ) as exc:
        msg = f"cannot reach PostgreSQL at {where}: {_reason(exc)}; start it or fix DATABASE_URL"
        raise ServerUnavailableError(msg) from exc
    except (ValueError, asyncpg.ClientConfigurationError) as exc:
        msg = f"DATABASE_URL {where!r} is not a PostgreSQL URL: {exc}"
        raise InvalidConfigError(msg) from exc
    except asyncpg.PostgresError as exc:
        msg = f"PostgreSQL at {where} refused the connection: {exc}"
        raise InvalidConfigError(msg) from exc
