"""A counting semaphore shared by processes: at most ``limit`` holders at once, run-wide.

The holders are a sorted set, one member per permit (``<holder>/<random token>``) scored by
the time its lease ends, in milliseconds on the Redis server's clock (``TIME``), so the
clocks of the holders' hosts never matter. Each operation is one round trip:

- acquire: one script drops the expired members, then adds this permit if fewer than
  ``limit`` remain, and moves the key's own expiry to the last lease's end;
- renew: one script moves the permit's score forward, only while it is still a member;
- release: ``ZREM`` of the permit's own member: a random token that no other holder has.

A holder that dies (SIGKILL, a lost host) stops renewing, and its permit counts against the
limit only until its lease ends (``ttl_seconds``). :meth:`Semaphore.hold` renews the lease
every third of its TTL while the block runs and releases it on the way out.

The key is in its namespace's hash tag (:mod:`memory.keys`), so it works on Redis Cluster.
Waiting is polling with jittered backoff, bounded by ``timeout``; it is not first come,
first served.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from memory._boundary import translate_errors
from memory._codec import as_str, ttl_ms
from memory.connections import RedisClient
from memory.errors import InvalidValueError, SemaphoreTimeoutError, ServerUnavailableError
from memory.keys import Keyspace, validate_id

logger = logging.getLogger(__name__)

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_ACQUIRE = (
    _NOW_MS
    + """
-- KEYS: 1 holders. ARGV: 1 permit, 2 limit, 3 ttl ms. Returns {granted, holders}.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[2]) then return {0, count} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return {1, count + 1}
"""
)

_RENEW = (
    _NOW_MS
    + """
-- KEYS: 1 holders. ARGV: 1 permit, 2 ttl ms. Returns 1 if renewed, 0 if the permit is gone.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
"""
)

_HOLDERS = (
    _NOW_MS
    + """
-- KEYS: 1 holders. The members whose lease has not ended.
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""
)

_RETRY_MIN = 0.02
_RETRY_MAX = 0.5
_RENEW_RETRY = 0.25  # seconds between renewal attempts while Redis does not answer


@dataclass(frozen=True, slots=True)
class Permit:
    """One granted place in a :class:`Semaphore`, held until released or its lease ends."""

    semaphore: str
    holder: str
    token: str
    ttl_seconds: float

    @property
    def member(self) -> str:
        """The sorted-set member that stands for this permit."""
        return f"{self.holder}/{self.token}"


@translate_errors
class Semaphore:
    """At most ``limit`` permits of ``name`` held at once by all clients of one namespace.

    Every client of a semaphore should pass the same ``limit``; one that passes a lower
    limit is simply granted less often.
    """

    def __init__(
        self,
        client: RedisClient,
        keys: Keyspace,
        name: str,
        limit: int,
        *,
        ttl_seconds: float = 30.0,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            msg = f"a semaphore's limit must be a positive integer, got {limit!r}"
            raise InvalidValueError(msg)
        self.name = validate_id(name, "semaphore")
        self.limit = limit
        self.ttl_seconds = ttl_seconds
        self._ttl_ms = ttl_ms(ttl_seconds, "a semaphore's ttl_seconds")
        self._client = client
        self._key = keys.semaphore(name)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew_script = client.register_script(_RENEW)
        self._holders = client.register_script(_HOLDERS)

    async def try_acquire(self, holder: str) -> Permit | None:
        """A permit if fewer than ``limit`` are held, in one round trip; else None."""
        validate_id(holder, "holder")
        permit = Permit(self.name, holder, secrets.token_hex(12), self.ttl_seconds)
        granted, _ = await self._acquire(
            keys=[self._key], args=[permit.member, self.limit, self._ttl_ms]
        )
        return permit if int(granted) else None

    async def release(self, permit: Permit) -> bool:
        """Give the permit back; False if its lease had already ended. Never touches another's."""
        return bool(await self._client.zrem(self._key, permit.member))

    async def renew(self, permit: Permit) -> bool:
        """Start the permit's lease again; False (and not renewed) if it had already ended."""
        renewed = await self._renew_script(keys=[self._key], args=[permit.member, self._ttl_ms])
        return bool(renewed)

    async def holders(self) -> list[str]:
        """Who holds a permit now (each holder's name once per permit it holds)."""
        members = await self._holders(keys=[self._key], args=[])
        return [as_str(m).rsplit("/", 1)[0] for m in members]

    @asynccontextmanager
    async def hold(
        self,
        holder: str,
        *,
        timeout: float = 60.0,  # noqa: ASYNC109 - bounds the wait for a permit, not the block
    ) -> AsyncIterator[Permit]:
        """Hold a permit for the block: wait up to ``timeout`` for one, renew it while held,
        release it on the way out. Raises :class:`SemaphoreTimeoutError` if none came."""
        permit = await self._wait_for(holder, timeout)
        error: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep, permit)
                try:
                    yield permit
                except BaseException as exc:  # re-raised as is, below
                    error = exc  # raised outside the task group, so it is not wrapped
                tg.cancel_scope.cancel()
            if error is not None:
                raise error
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await self.release(permit)
                except ServerUnavailableError as exc:
                    logger.warning("could not release %s (its lease ends): %s", permit, exc)

    async def _wait_for(self, holder: str, timeout: float) -> Permit:  # noqa: ASYNC109
        delay = _RETRY_MIN
        with anyio.move_on_after(timeout):
            while True:
                permit = await self.try_acquire(holder)
                if permit is not None:
                    return permit
                await anyio.sleep(delay * (0.5 + secrets.randbelow(1000) / 1000))
                delay = min(delay * 2, _RETRY_MAX)
        msg = (
            f"no place in semaphore {self.name!r} within {timeout:g} s: all {self.limit} are "
            "held; raise the timeout or the limit"
        )
        raise SemaphoreTimeoutError(msg)

    async def _keep(self, permit: Permit) -> None:
        """Renew the lease every third of its TTL until cancelled or found ended."""
        interval = permit.ttl_seconds / 3
        wait = interval
        while True:
            await anyio.sleep(wait)
            try:
                if not await self.renew(permit):
                    logger.warning(
                        "the lease of %s in semaphore %s ended before it was renewed; "
                        "the limit may be exceeded until this block ends",
                        permit.holder,
                        self.name,
                    )
                    return
                wait = interval
            except ServerUnavailableError as exc:
                logger.warning("could not renew %s in semaphore %s: %s", permit, self.name, exc)
                wait = min(interval, _RENEW_RETRY)
