"""Distributed locks: leases in Redis, fencing tokens from PostgreSQL, safe release and renewal.

**What a lease promises.** A lease is granted by a script that sets the lock key to this
lease's random value with ``PX ttl`` if the key is free. While Redis keeps its writes and the
clocks of Redis and the holder run at rates within the drift margin (below), no two holders
hold a lease on the same resource at once. Redis can break this: an OS crash under
``appendfsync everysec``, or a failover to a replica that had not received the last writes,
loses the lock key, and the next client is granted the lock while the first still holds it.

**What a fencing token promises.** Each grant carries a fencing token issued by PostgreSQL
(:meth:`memory.shared_db.SharedAgentDB.issue_fencing_token`): one statement, committed when
it returns, from one sequence, so no two grants ever carry the same token and every grant of a
resource carries a larger token than every grant of it before, whatever Redis loses.
PostgreSQL accepts the fenced writes of a document in that order: a token lower than the
highest it accepted for the key is refused, an equal one comes from the same grant, and once a
key has seen a token a write without one is refused. So when Redis double-grants, or a holder
stalls past its lease (a GC pause, SIGSTOP, a slow disk), the older holder's writes are
refused once the newer holder has written; before that, both may write (fencing orders writes,
it does not exclude the older holder).

The token is issued *after* Redis grants the lease, and the grant counts only if the token
arrived before the lease's local deadline: the next grant can only happen after that deadline
(while Redis keeps its writes), so its token is issued later and is larger. Token order
follows lease order. A holder whose PostgreSQL call outlives its lease releases the lease and
gets :class:`~memory.errors.ServerUnavailableError`; so does one whose PostgreSQL cannot
answer (fail closed: no lease without a durable token). A lock manager built without a token
source (no PostgreSQL: ``fences=None``) grants leases with ``fencing_token`` None: mutual
exclusion only, as far as Redis keeps its writes.

**What neither promises.** Nothing about effects outside PostgreSQL's fenced documents (a
holder that sends an email after losing its lease sends it); nothing for keys written without
tokens; nothing if PostgreSQL loses committed transactions (``synchronous_commit = off``, a
failover to an asynchronous replica), or if clocks drift beyond the margin.

**Retries and cancellation.** The acquire script recognises its own lease value: when the lock
already holds it (a retried acquire whose first reply was lost), it reports the grant again
and resets its TTL. The acquire is therefore safe to retry with the same value, and
:meth:`LockManager.lock` uses one value for all the attempts of one wait. An acquire that
fails or is cancelled after its request was sent (the wait's timeout, an outer cancel scope, a
PostgreSQL error) releases that value, shielded and bounded: release is compare-and-delete, so
this touches only a lease it may itself have been granted, never another holder's.

Release and renewal are compare-and-act scripts that touch the lock only while it still holds
this lease's value; the article's GET-then-DEL can delete a lock that expired and was granted
to someone else between the two commands.

**The local deadline.** The server starts the lease's TTL after it receives the request, so
the request's send time plus the TTL, less a margin for clock-rate drift (1 % of the TTL plus
2 ms, as Redlock allows), is a local deadline that passes before the server can grant the lock
to anyone else. :attr:`HeldLock.lost` turns true at that deadline unless a renewal moved it,
even when Redis is unreachable and no renewal can answer. Deadlines are kept on
:func:`memory._clock.now` (``CLOCK_BOOTTIME``), which keeps counting while the machine is
suspended: on the monotonic clock a lease that expired during a suspend looked valid after the
resume.

Renewal costs nothing until it is due: one timer per lock manager fires when the earliest
held lease's first renewal (a third of its TTL) is due, and only a block that lasts that long
gets a task, which renews its lease until the block ends. Most blocks are shorter, and pay
for the lock three round trips (acquire, the token, release).

:meth:`LockManager.lock` waits by default a little longer than one lease (``ttl_seconds`` plus
:data:`WAIT_SLACK`), so a holder that crashed without releasing is waited out.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from agentmem.memory import _clock, telemetry
from agentmem.memory._boundary import idempotent, translate_errors
from agentmem.memory._codec import as_str, ttl_ms
from agentmem.memory._scripts import LuaScript
from agentmem.memory.connections import RedisClient
from agentmem.memory.errors import (
    LockLostError,
    LockTimeoutError,
    ServerUnavailableError,
    StoreError,
)
from agentmem.memory.keys import Keyspace, validate_id

logger = logging.getLogger(__name__)

TokenIssuer = Callable[[str], Awaitable[int]]
"""Issues a durable fencing token for a grant of the lock on a resource (PostgreSQL's)."""

Clock = Callable[[], float]

_ACQUIRE = """
-- KEYS: 1 lock. ARGV: 1 lease value, 2 ttl ms. Returns {1, ''} when granted (also when the
-- lock already holds this very value: a retried acquire gets its own grant back, TTL reset),
-- else {0, the holder's value}.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, ''} end
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, ''}
end
return {0, held or ''}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

WAIT_SLACK = 5.0  # seconds lock() waits beyond one lease by default
_RETRY_MIN = 0.01
_RETRY_MAX = 0.2
_DRIFT_FACTOR = 0.01  # share of the TTL kept back for clock-rate drift (Redlock's figure)
_DRIFT_FIXED = 0.002  # seconds
_RENEW_RETRY = 0.25  # seconds between renewal attempts while Redis does not answer
_RELEASE_WAIT = 5.0  # seconds a release may take before the lease is left to expire
_STOP_WAIT = 0.5  # seconds a block's end waits for its cancelled renewal task


def default_wait(ttl_seconds: float) -> float:
    """How long :meth:`LockManager.lock` waits by default: one lease and :data:`WAIT_SLACK`,
    so a holder that crashed without releasing is waited out."""
    return ttl_seconds + WAIT_SLACK


def _valid_until(sent_at: float, ttl_seconds: float) -> float:
    """The local time before which a lease granted (or extended) at ``sent_at`` still holds."""
    return sent_at + ttl_seconds * (1 - _DRIFT_FACTOR) - _DRIFT_FIXED


@dataclass(frozen=True, slots=True)
class Lease:
    """A granted lock. ``fencing_token`` (from PostgreSQL) grows with every grant of the same
    resource and is unique per grant; None when the lock manager has no token source."""

    resource: str
    agent_id: str
    token: str
    fencing_token: int | None
    ttl_seconds: float
    valid_until: float = 0.0  # the local deadline of the grant, on the manager's clock

    @property
    def value(self) -> str:
        """What the lock key holds while this lease is current."""
        return f"{self.agent_id}/{self.token}"


class HeldLock:
    """A lease held by :meth:`LockManager.lock`, renewed while held (see the module's notes)."""

    def __init__(self, lease: Lease, valid_until: float, clock: Clock = _clock.now) -> None:
        self.lease = lease
        self.valid_until = valid_until  # on ``clock`` (CLOCK_BOOTTIME); moved by each renewal
        self.clock = clock
        self._lost = False

    @property
    def lost(self) -> bool:
        """True once the lease was found gone, or its local deadline passed unrenewed."""
        return self._lost or self.clock() >= self.valid_until

    def mark_lost(self) -> None:
        self._lost = True

    @property
    def remaining(self) -> float:
        """Seconds until the local deadline (0 once lost)."""
        return 0.0 if self._lost else max(0.0, self.valid_until - self.clock())

    @property
    def fencing_token(self) -> int | None:
        return self.lease.fencing_token

    def check(self) -> None:
        """Raise :class:`LockLostError` if the lease expired or was taken by another holder."""
        if self.lost:
            msg = (
                f"lock on {self.lease.resource!r} held by {self.lease.agent_id!r} was lost; "
                "another holder may have it now, so do not write on its behalf"
            )
            raise LockLostError(msg)


@translate_errors
class LockManager:
    """Locks on the resources of one namespace.

    ``fences`` issues the fencing tokens (:meth:`memory.shared_db.SharedAgentDB.
    issue_fencing_token` of the same namespace); without it leases carry no token. ``clock``
    keeps the local deadlines (:func:`memory._clock.now`; tests may pass another).
    """

    def __init__(
        self,
        client: RedisClient,
        keys: Keyspace,
        *,
        fences: TokenIssuer | None = None,
        clock: Clock = _clock.now,
    ) -> None:
        self._client = client
        self._keys = keys
        self.fences = fences
        self.clock = clock
        self._acquire = LuaScript(client, _ACQUIRE)
        self._release = LuaScript(client, _RELEASE)
        self._extend = LuaScript(client, _EXTEND)
        self._renewals = _Renewals()

    async def acquire_lock(
        self, resource: str, agent_id: str, ttl_seconds: float = 30.0, *, fenced: bool = True
    ) -> Lease | None:
        """Take the lock if it is free; None when someone else holds it.

        Two round trips: the lease (Redis), then its fencing token (PostgreSQL). Raises
        :class:`ServerUnavailableError`, holding nothing, when either cannot answer in time.
        ``fenced=False`` skips the token (one round trip, no PostgreSQL): for a lock that
        guards nothing a store checks, such as an agent's claim on its instance.
        """
        token = secrets.token_hex(16)
        lease, _ = await self._try_acquire(resource, agent_id, token, ttl_seconds, fenced=fenced)
        return lease

    async def release_lock(self, lease: Lease) -> bool:
        """Release the lock if this lease still holds it; never touches another holder's."""
        released = await self._release([self._keys.lock(lease.resource)], [lease.value])
        return bool(released)

    @idempotent  # extending twice ends the lease no earlier than extending once
    async def extend_lock(self, lease: Lease, ttl_seconds: float | None = None) -> bool:
        """Reset the lease's time to live if it still holds the lock."""
        ttl_ms = _ttl_ms(lease.ttl_seconds if ttl_seconds is None else ttl_seconds)
        extended = await self._extend([self._keys.lock(lease.resource)], [lease.value, ttl_ms])
        return bool(extended)

    @asynccontextmanager
    async def lock(
        self,
        resource: str,
        agent_id: str,
        *,
        ttl_seconds: float = 30.0,
        timeout: float | None = None,  # noqa: ASYNC109 - bounds the wait to acquire, not the block
        fenced: bool = True,
    ) -> AsyncIterator[HeldLock]:
        """Hold a lock for the block: wait up to ``timeout`` for it, renew it while held.

        ``timeout`` defaults to :func:`default_wait` (``ttl_seconds`` + 5 s): long enough for
        the lease of a holder that crashed to expire. If a renewal finds the lease gone,
        ``held.lost`` becomes true and ``held.check()`` raises; call it before acting on the
        lock's behalf, and pass ``held.fencing_token`` to stores that check it.
        ``fenced=False``: no fencing token (see :meth:`acquire_lock`).
        """
        wait = default_wait(ttl_seconds) if timeout is None else timeout
        token = secrets.token_hex(16)  # one lease value for every attempt of this wait
        lease, holder = await self._try_acquire(
            resource, agent_id, token, ttl_seconds, fenced=fenced
        )
        if lease is None:
            lease = await self._wait_for(
                resource,
                agent_id,
                token,
                ttl_seconds,
                wait_seconds=wait,
                holder=holder,
                fenced=fenced,
            )
        held = HeldLock(lease, lease.valid_until, self.clock)
        renewal = _Renewal(self, held)
        self._renewals.add(renewal)
        try:
            yield held
        finally:
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + _RELEASE_WAIT):
                await self._renewals.remove(renewal)
                try:
                    if not await self.release_lock(lease):
                        held.mark_lost()
                except ServerUnavailableError as exc:
                    logger.warning("could not release %s (it expires by itself): %s", resource, exc)

    async def _try_acquire(
        self, resource: str, agent_id: str, token: str, ttl_seconds: float, *, fenced: bool
    ) -> tuple[Lease | None, str]:
        """One attempt: the lease (or None and who holds it), with its fencing token.

        Whatever goes wrong once the request may have been sent, including a cancellation,
        releases this lease value before the error propagates (see the module's notes).
        """
        validate_id(agent_id, "agent_id")
        ttl = _ttl_ms(ttl_seconds)
        value = f"{agent_id}/{token}"
        key = self._keys.lock(resource)
        sent_at = self.clock()
        valid_until = _valid_until(sent_at, ttl_seconds)
        with telemetry.operation(
            "lock.acquire", "redis", self._keys.namespace, resource=resource, agent_id=agent_id
        ) as span:
            try:
                granted, holder = await self._grant(key, value, ttl)
                if not int(granted):
                    telemetry.set_attributes(span, {"agentmem.granted": False})
                    return None, as_str(holder).rsplit("/", 1)[0]
                fencing_token = await self._issue_token(resource, valid_until) if fenced else None
            except BaseException:
                await self._abandon(key, value)
                raise
            telemetry.set_attributes(
                span, {"agentmem.granted": True, "agentmem.fencing_token": fencing_token}
            )
        return Lease(resource, agent_id, token, fencing_token, ttl_seconds, valid_until), ""

    @idempotent  # the script recognises its own lease value: a repeat reports the same grant
    async def _grant(self, key: str, value: str, ttl: int) -> tuple[int, bytes | str]:
        granted, holder = await self._acquire([key], [value, ttl])
        return int(granted), holder

    async def _issue_token(self, resource: str, valid_until: float) -> int | None:
        """The grant's fencing token, if it arrives before the lease's local deadline."""
        if self.fences is None:
            return None
        # Not cancelled at the deadline: a query cancelled mid-flight costs the pool its
        # connection. The token source's own call deadline bounds the wait.
        fencing_token = await self.fences(resource)
        if self.clock() < valid_until:
            return fencing_token
        msg = (
            f"PostgreSQL did not issue the fencing token for the lock on {resource!r} "
            "before its lease ran out; the lock was not taken, try again"
        )
        raise ServerUnavailableError(msg)

    async def _abandon(self, key: str, value: str) -> None:
        """Release ``value`` if this attempt was granted it (shielded, bounded, never raises)."""
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + _RELEASE_WAIT):
            try:
                await self._release([key], [value])
            except Exception as exc:  # the acquire's own error is the one to raise
                logger.warning("could not release an abandoned lease on %s: %s", key, exc)
            return
        logger.warning("releasing an abandoned lease on %s timed out (it expires by itself)", key)

    async def _wait_for(
        self,
        resource: str,
        agent_id: str,
        token: str,
        ttl_seconds: float,
        *,
        wait_seconds: float,
        holder: str,
        fenced: bool,
    ) -> Lease:
        """The lease, once granted (after a first attempt found it held by ``holder``)."""
        delay = _RETRY_MIN
        with anyio.move_on_after(wait_seconds):
            while True:
                await anyio.sleep(delay * (0.5 + secrets.randbelow(1000) / 1000))
                delay = min(delay * 2, _RETRY_MAX)
                lease, holder = await self._try_acquire(
                    resource, agent_id, token, ttl_seconds, fenced=fenced
                )
                if lease is not None:
                    return lease
        msg = (
            f"could not lock {resource!r} within {wait_seconds} s; "
            f"it is held by {holder or 'another agent'!r}"
        )
        raise LockTimeoutError(msg)

    async def _renew(self, held: HeldLock, *, first_wait: float) -> None:
        """Extend the lease every third of its TTL (the first time after ``first_wait``); it
        is lost once found gone, or once its local deadline passes without a renewal (however
        long Redis takes to answer)."""
        # A plain asyncio task (see _Renewal), stopped by Task.cancel(): asyncio's own sleep
        # and timeout here (durations only; the deadline itself is on held.clock).
        lease = held.lease
        interval = lease.ttl_seconds / 3
        wait = first_wait
        while not held.lost:
            await asyncio.sleep(min(wait, held.remaining))
            if held.lost:
                break
            sent_at = held.clock()
            try:
                async with asyncio.timeout(held.remaining):
                    if not await self.extend_lock(lease):
                        held.mark_lost()
                        break
                held.valid_until = _valid_until(sent_at, lease.ttl_seconds)
                wait = interval
                continue
            except TimeoutError:
                pass  # lost by the clock: the loop ends
            except (ServerUnavailableError, StoreError) as exc:  # retried until the deadline
                logger.warning("could not renew the lock on %s: %s", lease.resource, exc)
            wait = min(interval, _RENEW_RETRY)
        logger.warning("lost the lock on %s (%s)", lease.resource, lease.agent_id)


class _Renewal:
    """Renews one held lease: nothing until its first renewal is due, then a task.

    The task belongs to the ``async with`` block that holds the lease: :meth:`stop` (called
    as the block ends) cancels it and waits for it.
    """

    def __init__(self, manager: LockManager, held: HeldLock) -> None:
        self.manager = manager
        self.held = held
        self.due = anyio.current_time() + held.lease.ttl_seconds / 3
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self.manager._renew(self.held, first_wait=0.0)
        )

    async def stop(self) -> None:
        """Cancel the renewal; wait for it at most :data:`_STOP_WAIT`. The release that follows
        does not need it: an extend that lands after the release finds the lease gone and
        ends the task. (A renewal cancelled in the middle of its Redis call was seen, in about
        one 8 + 8 run in five, to take the block's whole 5 s release deadline to unwind, which
        held up the agent's exit; the cause was not found.)"""
        task, self.task = self.task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=_STOP_WAIT)
        task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Collect a stopped renewal's outcome, so asyncio never reports it as unretrieved."""
    if not task.cancelled() and task.exception() is not None:
        logger.warning("a lock renewal ended with %r", task.exception())


class _Renewals:
    """The leases a :class:`LockManager` holds in ``async with`` blocks, and one timer.

    The timer fires at the earliest renewal due (or earlier: a block that ended leaves it
    armed rather than paying to cancel it) and starts a task for each lease whose first renewal
    is due. A block shorter than a third of its TTL costs a set insertion and removal.
    """

    def __init__(self) -> None:
        self._held: set[_Renewal] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, renewal: _Renewal) -> None:
        self._held.add(renewal)
        loop = asyncio.get_running_loop()  # anyio's clock on asyncio is this loop's
        if self._timer is None or self._loop is not loop or renewal.due < self._timer_due:
            self._arm(loop, renewal.due)

    async def remove(self, renewal: _Renewal) -> None:
        self._held.discard(renewal)
        await renewal.stop()

    def _arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if self._timer is not None and self._loop is loop:
            self._timer.cancel()
        self._loop, self._timer_due = loop, due
        self._timer = loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        waiting = [r for r in self._held if r.task is None]
        for renewal in waiting:
            if renewal.due <= now:
                renewal.start()
        later = [r.due for r in waiting if r.task is None]
        if later:
            self._arm(loop, min(later))


def _ttl_ms(ttl_seconds: float) -> int:
    return ttl_ms(ttl_seconds, "a lock's ttl_seconds")
