"""A counting semaphore shared by processes: at most ``limit`` holders at once, run-wide.

The holders are a sorted set, one member per permit (``<holder>/<random token>``) scored by
the time its lease ends, in milliseconds on the Redis server's clock (``TIME``). Each
operation is one round trip:

- acquire: one script drops the expired members, then adds this permit if fewer than
  ``limit`` remain (or finds it already there: see below), and moves the key's own expiry to
  the last lease's end;
- renew: one script moves the permit's score forward, only while it is still a member;
- release: ``ZREM`` of the permit's own member: a random token that no other holder has.

A holder that dies (SIGKILL, a lost host) stops renewing, and its permit counts against the
limit only until its lease ends (``ttl_seconds``). :meth:`Semaphore.hold` renews the lease
every third of its TTL while the block runs and releases it on the way out.

**A holder that stalls.** A holder paused past its TTL (a GC pause, SIGSTOP, a suspended
host) has lost its place, and someone else may hold it now. So a permit keeps its own clock:
the server starts a lease when it receives the request, so the request's send time plus the
TTL, less a margin for clock-rate drift (1 % of the TTL plus 2 ms, as in :mod:`memory.locks`),
is a local deadline that passes before the server can count the place free.
:attr:`Permit.lost` turns true at that deadline unless a renewal moved it (on
:func:`memory._clock.now`, which counts suspended time), and as soon as a renewal finds the
permit gone; :meth:`Permit.check` then raises :class:`PermitLostError`. The promise: at any
instant, at most ``limit`` permits of a semaphore pass ``check()``, as long as the holders'
clocks run within the drift margin of the server's. What a holder does after ``check()``
passed is its own: one that stalls between its check and its action (or never checks) can
still act outside the limit, so check again after any long step, as the LLM path does.

**A lost reply.** The permit's member is chosen before the request is sent, and the acquire
script answers "granted" when that member is already present, so the acquire sent again after
its reply was lost (the one retry :mod:`memory._boundary` makes on a dropped connection)
returns the permit it took instead of refusing it and leaving it held. An acquire that fails
or is cancelled while waiting for its reply removes its member (shielded, for at most 5 s),
so a grant that never reached its caller does not hold a place until its lease ends.

The key is in its namespace's hash tag (:mod:`memory.keys`), so it works on Redis Cluster; a
tenant-wide semaphore (:class:`~memory.keys.TenantKeys`, a cap across all of a tenant's runs)
is in the tenant's own slot instead.
Waiting is polling with jittered backoff, bounded by ``timeout``; it is not first come,
first served.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from redis.exceptions import RedisError

from agentmem.memory import _clock
from agentmem.memory._boundary import idempotent, translate_errors
from agentmem.memory._codec import as_str, ttl_ms
from agentmem.memory.connections import RedisClient
from agentmem.memory.errors import (
    InvalidValueError,
    PermitLostError,
    SemaphoreTimeoutError,
    ServerUnavailableError,
    StoreError,
)
from agentmem.memory.keys import Keyspace, TenantKeys, validate_id

logger = logging.getLogger(__name__)

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_ACQUIRE = (
    _NOW_MS
    + """
-- KEYS: 1 holders. ARGV: 1 permit, 2 limit, 3 ttl ms. Returns {granted, holders}.
-- A permit already present was granted by an earlier attempt of this same request.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1, count} end
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
_RELEASE_WAIT = 5.0  # seconds a release may take before the permit is left to expire
_DRIFT_FACTOR = 0.01  # share of the TTL kept back for clock-rate drift (Redlock's figure)
_DRIFT_FIXED = 0.002  # seconds


def _valid_until(sent_at: float, ttl_seconds: float) -> float:
    """The local time before which a permit granted (or renewed) at ``sent_at`` still holds."""
    return sent_at + ttl_seconds * (1 - _DRIFT_FACTOR) - _DRIFT_FIXED


class Permit:
    """One granted place in a :class:`Semaphore`, held until released or its lease ends.

    ``valid_until`` is its local deadline on :func:`memory._clock.now`, moved by each renewal
    (see the module's notes).
    """

    __slots__ = ("_lost", "holder", "semaphore", "token", "ttl_seconds", "valid_until")

    def __init__(
        self, semaphore: str, holder: str, token: str, ttl_seconds: float, valid_until: float
    ) -> None:
        self.semaphore = semaphore
        self.holder = holder
        self.token = token
        self.ttl_seconds = ttl_seconds
        self.valid_until = valid_until
        self._lost = False

    def __repr__(self) -> str:
        return f"Permit({self.semaphore!r}, {self.holder!r}, lost={self.lost})"

    @property
    def member(self) -> str:
        """The sorted-set member that stands for this permit."""
        return f"{self.holder}/{self.token}"

    @property
    def lost(self) -> bool:
        """True once the local deadline passed unrenewed, or the permit was found gone or
        released; it never turns false again."""
        if not self._lost and _clock.now() >= self.valid_until:
            self._lost = True
        return self._lost

    def mark_lost(self) -> None:
        self._lost = True

    @property
    def remaining(self) -> float:
        """Seconds until the local deadline (0 once lost)."""
        return 0.0 if self.lost else max(0.0, self.valid_until - _clock.now())

    def check(self) -> None:
        """Raise :class:`PermitLostError` if the permit's lease ended or it was found gone."""
        if self.lost:
            msg = (
                f"permit of {self.holder!r} in semaphore {self.semaphore!r} was lost (its lease "
                "ended unrenewed); others may hold its place now, so do not act on it"
            )
            raise PermitLostError(msg)


@translate_errors
class Semaphore:
    """At most ``limit`` permits of ``name`` held at once by all clients of one namespace.

    Every client of a semaphore should pass the same ``limit``; one that passes a lower
    limit is simply granted less often.
    """

    def __init__(
        self,
        client: RedisClient,
        keys: Keyspace | TenantKeys,
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
        """A permit if fewer than ``limit`` are held, in one round trip; else None.

        Failed or cancelled while its reply was awaited, it gives back the place it may have
        been granted before raising.
        """
        validate_id(holder, "holder")
        permit = Permit(self.name, holder, secrets.token_hex(12), self.ttl_seconds, 0.0)
        sent_at = _clock.now()
        try:
            granted = await self._grant(permit.member)
        except BaseException:
            await self._abandon(permit.member)
            raise
        if not granted:
            return None
        permit.valid_until = _valid_until(sent_at, self.ttl_seconds)
        return permit

    @idempotent  # the member is chosen before the first attempt, and granted again as present
    async def _grant(self, member: str) -> bool:
        granted, _ = await self._acquire(keys=[self._key], args=[member, self.limit, self._ttl_ms])
        return bool(int(granted))

    async def _abandon(self, member: str) -> None:
        """Remove a member whose grant may have happened without reaching its holder."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_RELEASE_WAIT):
            try:
                await self._client.zrem(self._key, member)
            except (RedisError, OSError) as exc:  # the lease ends by itself
                logger.warning("could not give back %s in semaphore %s: %s", member, self.name, exc)

    @idempotent
    async def release(self, permit: Permit) -> bool:
        """Give the permit back (it is lost from then on); False if its lease had already ended
        (or, rarely, if a first attempt whose reply was lost gave it back). Never touches
        another's."""
        permit.mark_lost()
        return bool(await self._client.zrem(self._key, permit.member))

    async def renew(self, permit: Permit) -> bool:
        """Start the permit's lease again and move its local deadline; False (and the permit
        is lost) if it had already ended."""
        sent_at = _clock.now()
        if not await self._extend(permit.member):
            permit.mark_lost()
            return False
        if not permit.lost:
            permit.valid_until = _valid_until(sent_at, permit.ttl_seconds)
        return True

    @idempotent  # extending twice ends the lease no earlier than extending once
    async def _extend(self, member: str) -> bool:
        return bool(await self._renew_script(keys=[self._key], args=[member, self._ttl_ms]))

    @idempotent
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
        release it on the way out. Raises :class:`SemaphoreTimeoutError` if none came.

        If the lease ends under the block (a stall past the TTL), ``permit.lost`` turns true
        and ``permit.check()`` raises: call it before acting on the permit's behalf.
        """
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
            with anyio.CancelScope(shield=True), anyio.move_on_after(_RELEASE_WAIT):
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
        """Renew the lease every third of its TTL until cancelled or lost: found gone, or its
        local deadline passed without a renewal (however long Redis takes to answer)."""
        interval = permit.ttl_seconds / 3
        wait = interval
        while not permit.lost:
            await anyio.sleep(min(wait, permit.remaining))
            if permit.lost:
                break
            try:
                with anyio.fail_after(permit.remaining):
                    if not await self.renew(permit):
                        break
                wait = interval
            except TimeoutError:
                break  # lost by the clock
            except (ServerUnavailableError, StoreError) as exc:  # retried until the deadline
                logger.warning("could not renew %s in semaphore %s: %s", permit, self.name, exc)
                wait = min(interval, _RENEW_RETRY)
        logger.warning(
            "the permit of %s in semaphore %s was lost (its lease ended unrenewed); "
            "its check() raises from now on",
            permit.holder,
            self.name,
        )
