"""``SharedAgentDB``: versioned JSON documents on PostgreSQL with optimistic locking.

Every write appends a new version; no version is ever overwritten, so the whole history of a
document (who wrote each version, when, holding which fencing token) stays readable. A write
may name the version it was based on (``expected_version``); if another writer got there
first it fails with :class:`~memory.errors.ConflictError` and writes nothing, and
:meth:`SharedAgentDB.update` turns that into a bounded, jittered retry of the whole
read-modify-write.

**Fencing.** This store also issues the fencing tokens of :mod:`memory.locks`
(:meth:`SharedAgentDB.issue_fencing_token`, one statement, durable when it returns), so the
tokens it checks come from the same system of record, whatever Redis loses. Tokens are unique
per grant and increase with every grant of a resource. A write may carry a lock's token: the
store accepts, for each key, fenced writes only in non-decreasing token order (a token lower
than the highest it has accepted for the key is refused with
:class:`~memory.errors.StaleFencingTokenError`; an equal one can only come from the same grant,
the holder writing again). Once a key has accepted a token, a write without one is refused too
(:class:`~memory.errors.UnfencedWriteError`). This makes a holder that stalled past its lease,
or one that Redis granted the lock to alongside another after losing writes, harmless to keys
written under the lock. It promises nothing for keys written without tokens, and nothing if
PostgreSQL itself loses committed transactions (``synchronous_commit = off``, a failover to an
asynchronous replica).

Each write is one round trip: the checks and the append run in a server-side function
(migrations ``0001``-``0003``) under the key's head-row lock.

**Read replicas.** A store may also hold a pool on a streaming read replica
(``DATABASE_READ_URL``). Plain reads always go to the primary, so they see the latest version;
a reader that tolerates lag (a viewer, ``agentmem inspect``, the report) asks for
:meth:`SharedAgentDB.replica`, a view whose reads go to the replica. Replication is
asynchronous, so the view may miss the newest versions for a moment; it falls back to the
primary when the replica is unreachable (or not yet initialised), and when a version asked for
by number is missing there. Writes and :meth:`SharedAgentDB.update` (a read-modify-write) always
use the primary, also through the view. The replica is never migrated: it replays the
primary's schema.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import anyio
import asyncpg

from agentmem.memory import telemetry
from agentmem.memory._boundary import POSTGRES_DOWN, translate_errors, unbounded
from agentmem.memory._codec import BIGINT_MAX, INT32_MAX, check_int, check_text, encode_json
from agentmem.memory._resource import AsyncResource
from agentmem.memory.connections import MemoryConfig, postgres_pool
from agentmem.memory.errors import (
    ConflictError,
    StaleFencingTokenError,
    UnfencedWriteError,
    UnissuedFencingTokenError,
)
from agentmem.memory.keys import validate_id
from agentmem.memory.limits import Limits
from agentmem.memory.migrate import migrate
from agentmem.memory.retry import retrying

logger = logging.getLogger(__name__)

# A replica that cannot answer: down, starting up, or not yet holding the schema.
_REPLICA_UNAVAILABLE = (
    *POSTGRES_DOWN,
    OSError,
    TimeoutError,
    asyncpg.UndefinedTableError,
    asyncpg.UndefinedFunctionError,
)

_COLUMNS = "key, version, value::text AS value, agent_id, created_at, fencing_token"


@dataclass(frozen=True, slots=True)
class Document:
    """One version of a document."""

    key: str
    value: Any
    version: int
    agent_id: str
    created_at: datetime
    fencing_token: int | None = None


@translate_errors
class SharedAgentDB(AsyncResource):
    """Versioned documents of one namespace, shared by every agent.

    Pass a pool you own (run :meth:`migrate` once), or use :meth:`connect`, which creates a
    pool, migrates, and closes the pool in :meth:`close`. ``read_pool`` is an optional pool on
    a read replica, used only by the lag-tolerant view :meth:`replica`.
    """

    _server_name = "PostgreSQL"

    def __init__(
        self,
        pool: asyncpg.Pool,
        namespace: str = "default",
        *,
        call_deadline: float = 10.0,
        limits: Limits | None = None,
        read_pool: asyncpg.Pool | None = None,
    ) -> None:
        self.limits = limits or Limits()  # size caps for written values
        self.pool = pool
        self.read_pool = read_pool
        self.stale_ok = False  # True in the view returned by replica(): reads may lag
        self.namespace = validate_id(namespace, "namespace")
        self.conflicts = 0  # version conflicts met by this instance's writes (for metrics)
        self._call_deadline = call_deadline  # each call is cancelled after this many seconds

    @classmethod
    async def connect(cls, dsn: str, namespace: str = "default", *, max_size: int = 10) -> Self:
        """A store on a pool of its own for ``dsn`` (default timeouts), migrated, closed by
        :meth:`aclose`; processes use :func:`memory.layer.open_memory` instead."""
        config = MemoryConfig(redis_url="", database_url=dsn, pool_max_size=max_size)
        pool = await postgres_pool(config, dsn)
        db = cls(pool, namespace, call_deadline=config.call_deadline)
        db.own(pool.close)
        try:
            await db.migrate()
        except BaseException:
            await db.aclose()
            raise
        return db

    def for_namespace(self, namespace: str) -> SharedAgentDB:
        """The documents of ``namespace`` on the same pools; the view owns nothing."""
        view = SharedAgentDB(
            self.pool,
            namespace,
            call_deadline=self._call_deadline,
            limits=self.limits,
            read_pool=self.read_pool,
        )
        view.stale_ok = self.stale_ok
        return view

    def replica(self) -> SharedAgentDB:
        """A view of the same documents whose reads may lag behind the latest writes.

        Its reads go to the read replica when one is configured (else to the primary), and fall
        back to the primary when the replica cannot answer. Writes and :meth:`update` still go
        to the primary. The view owns nothing: close the store it came from.
        """
        view = self.for_namespace(self.namespace)
        view.stale_ok = True
        return view

    @unbounded
    async def migrate(self) -> list[int]:
        """Bring the schema up to date; returns the migrations applied now.

        A read-only server (a hot standby, or one with ``default_transaction_read_only``) is
        left alone: a replica receives the schema from its primary.
        """
        with anyio.fail_after(self._call_deadline):
            read_only = await self.pool.fetchval(
                "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'"
            )
        if read_only:
            logger.info("not migrating %s: the server is read-only", self.namespace)
            return []
        return await migrate(self.pool, acquire_timeout=self._call_deadline)

    async def close(self) -> None:
        """Close what this store owns (the pool, if :meth:`connect` made it)."""
        await self.aclose()

    @unbounded  # each attempt (replica, then primary) is bounded by the call deadline
    async def read(self, key: str, version: int | None = None) -> Document | None:
        """The latest version of a document, or the given one; None if there is none.

        Through :meth:`replica`, a version asked for by number that the replica lacks (it may
        lag) is read from the primary.
        """
        _check_key(key)
        if version is not None:
            check_int(version, "version", 1, INT32_MAX)
        with telemetry.operation("document.read", "postgresql", self.namespace, key=key):
            return await self._read(key, version)

    @unbounded  # as read(): each attempt has the call deadline
    async def _read(self, key: str, version: int | None) -> Document | None:
        if version is None:
            sql = (
                f"SELECT {_COLUMNS} FROM documents WHERE namespace = $1 AND key = $2 "
                "ORDER BY version DESC LIMIT 1"
            )
            rows = await self._fetch(sql, self.namespace, key)
        else:
            sql = (
                f"SELECT {_COLUMNS} FROM documents "
                "WHERE namespace = $1 AND key = $2 AND version = $3"
            )
            rows = await self._fetch(sql, self.namespace, key, version)
            if not rows and self._reads_replica:  # not replayed there yet, or never written
                rows = await self._fetch_primary(sql, self.namespace, key, version)
        return _document(rows[0]) if rows else None

    @unbounded
    async def read_many(self, keys: Sequence[str]) -> dict[str, Document]:
        """The latest version of each document that exists, in one query."""
        for key in keys:
            _check_key(key)
        sql = (
            f"SELECT DISTINCT ON (key) {_COLUMNS} FROM documents "
            "WHERE namespace = $1 AND key = ANY($2::text[]) ORDER BY key, version DESC"
        )
        rows = await self._fetch(sql, self.namespace, list(keys))
        return {row["key"]: _document(row) for row in rows}

    @unbounded
    async def history(self, key: str) -> list[Document]:
        """Every version of a document, oldest first."""
        _check_key(key)
        sql = f"SELECT {_COLUMNS} FROM documents WHERE namespace = $1 AND key = $2 ORDER BY version"
        return [_document(row) for row in await self._fetch(sql, self.namespace, key)]

    @unbounded
    async def keys(self, prefix: str = "") -> list[str]:
        """The keys of every document (starting with ``prefix``), sorted."""
        check_text(prefix, "key prefix", 1024, allow_nul=False)
        sql = (
            "SELECT key FROM document_heads "
            "WHERE namespace = $1 AND version > 0 AND starts_with(key, $2) ORDER BY key"
        )
        return [row["key"] for row in await self._fetch(sql, self.namespace, prefix)]

    async def drop_all(self) -> int:
        """Delete every document of this namespace, all versions; returns how many versions."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM document_heads WHERE namespace = $1", self.namespace)
            await conn.execute("DELETE FROM lock_fences WHERE namespace = $1", self.namespace)
            status = await conn.execute(
                "DELETE FROM documents WHERE namespace = $1", self.namespace
            )
        return int(status.split()[-1])

    async def write(
        self,
        key: str,
        value: Any,
        agent_id: str,
        expected_version: int | None = None,
        *,
        fencing_token: int | None = None,
    ) -> Document:
        """Append a new version, in one round trip.

        ``expected_version``: None writes whatever the current version is; 0 only if the
        document does not exist yet; n only if n is still the latest version (else
        :class:`ConflictError`). A ``fencing_token`` lower than one this key has already
        seen is refused with :class:`StaleFencingTokenError`; one no lock grant was given,
        with :class:`UnissuedFencingTokenError`; no ``fencing_token`` on a key that has seen
        one, with :class:`UnfencedWriteError`. Nothing is written on error.
        """
        _check_key(key)
        validate_id(agent_id, "agent_id")
        if expected_version is not None:
            check_int(expected_version, "expected_version", 0, INT32_MAX)
        if fencing_token is not None:
            check_int(fencing_token, "fencing_token", 0, BIGINT_MAX)
        encoded = encode_json(
            value,
            f"value of document {key!r}",
            max_bytes=self.limits.document_value_bytes,
            max_depth=self.limits.json_depth,
            allow_nul=False,  # PostgreSQL's jsonb cannot hold NUL characters
        )
        with telemetry.operation(
            "document.write", "postgresql", self.namespace, key=key, agent_id=agent_id
        ) as span:
            row = await self.pool.fetchrow(
                "SELECT * FROM agentmem_write($1, $2, $3::text::jsonb, $4, $5, $6)",
                self.namespace,
                key,
                encoded,
                agent_id,
                expected_version,
                fencing_token,
            )
            assert row is not None
            telemetry.set_attributes(
                span, {"agentmem.outcome": row["outcome"], "agentmem.version": row["version"]}
            )
        if row["outcome"] == "unissued":
            raise UnissuedFencingTokenError(key, fencing_token or 0)
        if row["outcome"] == "unfenced":
            raise UnfencedWriteError(key, row["highest_token"])
        if row["outcome"] == "stale":
            raise StaleFencingTokenError(key, fencing_token or 0, row["highest_token"])
        if row["outcome"] == "conflict":
            self.conflicts += 1
            raise ConflictError(key, expected_version, row["version"])
        return Document(
            key, json.loads(encoded), row["version"], agent_id, row["created_at"], fencing_token
        )

    async def issue_fencing_token(self, resource: str) -> int:
        """A new fencing token for a grant of the lock on ``resource``, in one statement.

        Larger than every token issued before it (for any resource), and durable once this
        returns: PostgreSQL has committed it, so no later call can return it or a smaller one
        even if Redis, which granted the lease, loses its writes. See :mod:`memory.locks`.
        """
        validate_id(resource, "resource")
        token = await self.pool.fetchval(
            "INSERT INTO lock_fences AS f (namespace, resource, token) "
            "VALUES ($1, $2, nextval('agentmem_fencing_tokens')) "
            "ON CONFLICT (namespace, resource) DO UPDATE "
            "SET token = EXCLUDED.token, issued_at = EXCLUDED.issued_at "
            "RETURNING f.token",
            self.namespace,
            resource,
        )
        return int(token)

    @unbounded
    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        agent_id: str,
        *,
        fencing_token: int | None = None,
        attempts: int = 50,
    ) -> Document:
        """Read, apply ``fn`` to the value (None if absent), write; retry on conflict.

        ``fn`` may run more than once, so it must not have side effects.
        """
        async for attempt in retrying(
            ConflictError, attempts=attempts, timeout=60.0, initial=0.005, maximum=0.2
        ):
            with attempt:
                current = await self._latest(key)
                value = fn(None if current is None else current.value)
                expected = 0 if current is None else current.version
                return await self.write(key, value, agent_id, expected, fencing_token=fencing_token)
        raise AssertionError  # pragma: no cover - retrying re-raises the last error

    @property
    def _reads_replica(self) -> bool:
        return self.stale_ok and self.read_pool is not None

    @unbounded  # the replica's attempt and the primary's each have the call deadline
    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        """Rows of a read: from the replica through the view (the primary if it cannot
        answer), else from the primary."""
        if self.stale_ok and self.read_pool is not None:
            try:
                with anyio.fail_after(self._call_deadline):
                    return await self.read_pool.fetch(sql, *args)
            except _REPLICA_UNAVAILABLE as exc:
                logger.warning("read replica unavailable (%s); reading from the primary", exc)
        return await self._fetch_primary(sql, *args)

    async def _fetch_primary(self, sql: str, *args: object) -> list[asyncpg.Record]:
        return await self.pool.fetch(sql, *args)

    async def _latest(self, key: str) -> Document | None:
        """The latest version, from the primary whatever the view (for read-modify-write)."""
        sql = (
            f"SELECT {_COLUMNS} FROM documents WHERE namespace = $1 AND key = $2 "
            "ORDER BY version DESC LIMIT 1"
        )
        rows = await self._fetch_primary(sql, self.namespace, key)
        return _document(rows[0]) if rows else None


def _check_key(key: str) -> None:
    """Document keys follow the id rule (:func:`~memory.keys.validate_id`), stored as given."""
    validate_id(key, "document key")


def _document(row: asyncpg.Record) -> Document:
    return Document(
        key=row["key"],
        value=json.loads(row["value"]),
        version=row["version"],
        agent_id=row["agent_id"],
        created_at=row["created_at"],
        fencing_token=row["fencing_token"],
    )
