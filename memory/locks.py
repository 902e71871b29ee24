"""Distributed locks: leases with a random token, a fencing token, safe release and renewal.

A lease is granted by ``SET key token NX PX ttl``; in the same script the resource's fence
counter is incremented, so every grant of a resource carries a larger fencing token than the
one before. Release and renewal are compare-and-act scripts that touch the lock only while it
still holds this lease's token; the article's GET-then-DEL can delete a lock that expired and
was granted to someone else between the two commands.

A lease can still expire under a holder that stalls (a GC pause, SIGSTOP, a slow disk). That
is what the fencing token is for: stores that accept writes from lock holders
(:meth:`memory.shared_db.SharedAgentDB.write`) reject a token lower than one they have seen.

A holder also keeps its own clock on the lease. The server starts the lease's TTL after it
receives the request, so the request's send time plus the TTL, less a margin for clock-rate
drift (1 % of the TTL plus 2 ms, as Redlock allows), is a local deadline that passes before
the server can grant the lock to anyone else. :attr:`HeldLock.lost` turns true at that
deadline unless a renewal moved it, even when Redis is unreachable and no renewal can answer.

Renewal costs nothing until it is due: one timer per lock manager fires when the earliest
held lease's first renewal (a third of its TTL) is due, and only a block that lasts that long
gets a task, which renews its lease until the block ends. Most blocks are shorter, and pay
for the lock just its two round trips (acquire and release), as redis-py's ``Lock`` does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from memory._boundary import translate_errors
from memory._codec import as_str, ttl_ms
from memory._scripts import LuaScript
from memory.connections import RedisClient
from memory.errors import LockLostError, LockTimeoutError, ServerUnavailableError, StoreError
from memory.keys import Keyspace, validate_id

logger = logging.getLogger(__name__)

_ACQUIRE = """
-- KEYS: 1 lock, 2 fence counter. ARGV: 1 lease value, 2 ttl ms.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {redis.call('INCR', KEYS[2]), ''}
end
return {0, redis.call('GET', KEYS[1]) or ''}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RETRY_MIN = 0.01
_RETRY_MAX = 0.2
_DRIFT_FACTOR = 0.01  # share of the TTL kept back for clock-rate drift (Redlock's figure)
_DRIFT_FIXED = 0.002  # seconds
_RENEW_RETRY = 0.25  # seconds between renewal attempts while Redis does not answer
_RELEASE_WAIT = 5.0  # seconds a release may take before the lease is left to expire
_STOP_WAIT = 0.5  # seconds a block's end waits for its cancelled renewal task


def _valid_until(sent_at: float, ttl_seconds: float) -> float:
    """The local time before which a lease granted (or extended) at ``sent_at`` still holds."""
    return sent_at + ttl_seconds * (1 - _DRIFT_FACTOR) - _DRIFT_FIXED


@dataclass(frozen=True, slots=True)
class Lease:
    """A granted lock. ``fencing_token`` grows with every grant of the same resource."""

    resource: str
    agent_id: str
    token: str
    fencing_token: int
    ttl_seconds: float

    @property
    def value(self) -> str:
        """What the lock key holds while this lease is current."""
        return f"{self.agent_id}/{self.token}"


class HeldLock:
    """A lease held by :meth:`LockManager.lock`, renewed while held (see the module's notes)."""

    def __init__(self, lease: Lease, valid_until: float) -> None:
        self.lease = lease
        self.valid_until = valid_until  # on anyio's clock; moved by each renewal
        self._lost = False

    @property
    def lost(self) -> bool:
        """True once the lease was found gone, or its local deadline passed unrenewed."""
        return self._lost or anyio.current_time() >= self.valid_until

    def mark_lost(self) -> None:
        self._lost = True

    @property
    def remaining(self) -> float:
        """Seconds until the local deadline (0 once lost)."""
        return 0.0 if self._lost else max(0.0, self.valid_until - anyio.current_time())

    @property
    def fencing_token(self) -> int:
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
    """Locks on the resources of one namespace."""

    def __init__(self, client: RedisClient, keys: Keyspace) -> None:
        self._client = client
        self._keys = keys
        self._acquire = LuaScript(client, _ACQUIRE)
        self._release = LuaScript(client, _RELEASE)
        self._extend = LuaScript(client, _EXTEND)
        self._renewals = _Renewals()

    async def acquire_lock(
        self, resource: str, agent_id: str, ttl_seconds: float = 30.0
    ) -> Lease | None:
        """Take the lock if it is free, in one round trip; None when someone else holds it."""
        lease, _ = await self._try_acquire(resource, agent_id, ttl_seconds)
        return lease

    async def release_lock(self, lease: Lease) -> bool:
        """Release the lock if this lease still holds it; never touches another holder's."""
        released = await self._release([self._keys.lock(lease.resource)], [lease.value])
        return bool(released)

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
        timeout: float = 10.0,  # noqa: ASYNC109 - bounds the wait to acquire, not the block
    ) -> AsyncIterator[HeldLock]:
        """Hold a lock for the block: wait up to ``timeout`` for it, renew it while held.

        If a renewal finds the lease gone, ``held.lost`` becomes true and ``held.check()``
        raises; call it before acting on the lock's behalf, and pass ``held.fencing_token``
        to stores that check it.
        """
        sent_at = anyio.current_time()
        lease, holder = await self._try_acquire(resource, agent_id, ttl_seconds)
        if lease is None:
            sent_at, lease = await self._wait_for(resource, agent_id, ttl_seconds, timeout, holder)
        held = HeldLock(lease, _valid_until(sent_at, ttl_seconds))
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
        self, resource: str, agent_id: str, ttl_seconds: float
    ) -> tuple[Lease | None, str]:
        validate_id(agent_id, "agent_id")
        lease = Lease(resource, agent_id, secrets.token_hex(16), 0, ttl_seconds)
        keys = [self._keys.lock(resource), self._keys.fence(resource)]
        fence, holder = await self._acquire(keys, [lease.value, _ttl_ms(ttl_seconds)])
        if int(fence) == 0:
            return None, as_str(holder).rsplit("/", 1)[0]
        return Lease(resource, agent_id, lease.token, int(fence), ttl_seconds), ""

    async def _wait_for(
        self, resource: str, agent_id: str, ttl_seconds: float, wait_seconds: float, holder: str
    ) -> tuple[float, Lease]:
        """The lease, once granted, and the local time its request was sent (after a first
        attempt found it held by ``holder``)."""
        delay = _RETRY_MIN
        with anyio.move_on_after(wait_seconds):
            while True:
                await anyio.sleep(delay * (0.5 + secrets.randbelow(1000) / 1000))
                delay = min(delay * 2, _RETRY_MAX)
                sent_at = anyio.current_time()
                lease, holder = await self._try_acquire(resource, agent_id, ttl_seconds)
                if lease is not None:
                    return sent_at, lease
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
        # and timeout here.
        lease = held.lease
        interval = lease.ttl_seconds / 3
        wait = first_wait
        while not held.lost:
            await asyncio.sleep(min(wait, held.remaining))
            if held.lost:
                break
            sent_at = anyio.current_time()
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
