"""The memory layer's boundary: driver errors become project errors here, and only here.

Every store class is decorated with :func:`translate_errors`, so that callers above
``memory/`` never see ``redis.exceptions`` or ``asyncpg`` types: an outage (refused or dropped
connection, a timeout, a server shutting down) becomes :class:`ServerUnavailableError` (also a
``ConnectionError``), anything else the server refuses becomes :class:`StoreError`, and the
project's own errors pass through unchanged. As eventsourcing does at the edge of its
persistence module, the driver's exception stays attached as ``__cause__``.

A store may also set ``_call_deadline`` (seconds): each of its translated calls is then
cancelled once it runs past it, so no call waits on a silent server longer than that. Methods
made of several bounded calls opt out with :func:`unbounded`.

**Retries.** The Redis clients retry nothing by themselves (:mod:`memory.connections`): a
command whose connection dropped may or may not have run, and running a write twice is a
second write. The one retry is here, and only for a method marked :func:`idempotent`: when its
Redis connection drops (a restarted server, a lost reply), the whole method runs once more, at
once, on a new connection. A timeout is never retried (a silent server: a second wait only
doubles the first), nor refused credentials. Mark a method idempotent only when running it
twice has the effect of running it once and returns what the first run would have:

- a read;
- a write whose script recognises its own repeat by a token the client chose *before* the
  first attempt and passes in (an idempotency key, a permit's member, a lease's value) and
  answers a repeat with the first run's result.

The token must be chosen outside the marked method (the caller's, or a public method that
picks it and calls a private marked one), so that the retry sends the same token. Every other
write is not retried: a dropped connection reaches its caller as
:class:`ServerUnavailableError`, and the write may or may not have happened.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import asyncpg
import redis.exceptions as redis_errors

from agentmem.memory.errors import AgentMemoryError, ServerUnavailableError, StoreError

T = TypeVar("T")

logger = logging.getLogger(__name__)

_REDIS_DOWN = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    # a cluster between a primary's death and its replica's promotion: retry later
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.SlotNotCoveredError,
)
POSTGRES_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InterfaceError,
)
_UNBOUNDED = "__agentmem_unbounded__"
_IDEMPOTENT = "__agentmem_idempotent__"


def translate(exc: BaseException) -> BaseException:
    """The project error for a driver error (``exc`` itself if it is not a driver error)."""
    if isinstance(exc, AgentMemoryError):
        return exc
    if isinstance(exc, _REDIS_DOWN):
        return ServerUnavailableError(f"Redis is unavailable: {_reason(exc)}")
    if isinstance(exc, POSTGRES_DOWN):
        return ServerUnavailableError(f"PostgreSQL is unavailable: {_reason(exc)}")
    if isinstance(exc, TimeoutError):
        return ServerUnavailableError(f"the server did not answer in time: {_reason(exc)}")
    if isinstance(exc, OSError):
        return ServerUnavailableError(f"cannot reach the server: {_reason(exc)}")
    if isinstance(exc, redis_errors.RedisError):
        return StoreError(f"Redis refused the operation: {_reason(exc)}")
    if isinstance(exc, asyncpg.PostgresError):
        return StoreError(f"PostgreSQL refused the operation: {_reason(exc)}")
    return exc


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def unbounded(fn: T) -> T:
    """Mark a method made of several bounded calls: no deadline for the whole of it."""
    setattr(fn, _UNBOUNDED, True)
    return fn


def idempotent(fn: T) -> T:
    """Mark a method safe to run twice (see the module's notes): it is run once more, at once,
    when its Redis connection drops."""
    setattr(fn, _IDEMPOTENT, True)
    return fn


def _dropped(exc: BaseException) -> bool:
    """Whether ``exc`` is a Redis connection that dropped (not a timeout, not refused
    credentials): the request may or may not have run."""
    return isinstance(exc, redis_errors.ConnectionError) and not isinstance(
        exc, redis_errors.AuthenticationError | redis_errors.AuthorizationError
    )


def translate_errors(cls: type[T]) -> type[T]:
    """Translate driver errors in every coroutine and async generator defined on ``cls``."""
    for name, member in list(vars(cls).items()):
        if inspect.iscoroutinefunction(member):
            setattr(cls, name, _coroutine(member))
        elif inspect.isasyncgenfunction(member):
            setattr(cls, name, _generator(member))
    return cls


def translated(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Translate driver errors raised by one coroutine function (for module-level functions)."""
    return _coroutine(fn)


def _coroutine(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    bounded = not getattr(fn, _UNBOUNDED, False)
    call = _retried_once(fn) if getattr(fn, _IDEMPOTENT, False) else fn

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        deadline = getattr(args[0], "_call_deadline", None) if bounded and args else None
        scope: anyio.CancelScope | None = None
        try:
            if deadline is None:
                return await call(*args, **kwargs)
            with anyio.fail_after(deadline) as scope:
                return await call(*args, **kwargs)
        except TimeoutError as exc:
            if scope is None or not scope.cancel_called or isinstance(exc, AgentMemoryError):
                raise translate(exc) from exc  # a driver's own timeout, not the deadline
            msg = f"{_what(args[0])} did not answer within {deadline:g} s"
            raise ServerUnavailableError(msg) from exc
        except Exception as exc:
            translated_exc = translate(exc)
            if translated_exc is exc:
                raise
            raise translated_exc from exc

    return wrapper


def _retried_once(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """``fn``, run once more when its Redis connection drops (the driver's error, before
    translation: a marked method that calls another sees the inner one's retry already spent)."""

    async def once_more(*args: Any, **kwargs: Any) -> T:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            if not _dropped(exc):
                raise
            logger.debug("retrying %s once: %s", fn.__qualname__, _reason(exc))
        return await fn(*args, **kwargs)

    return once_more


def _what(store: object) -> str:
    return str(getattr(store, "_server_name", "the server"))


def _generator(
    fn: Callable[..., AsyncGenerator[T, None]],
) -> Callable[..., AsyncGenerator[T, None]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[T, None]:
        generator = fn(*args, **kwargs)
        try:
            async for item in generator:
                yield item
        except Exception as exc:
            translated_exc = translate(exc)
            if translated_exc is exc:
                raise
            raise translated_exc from exc
        finally:
            await generator.aclose()

    return wrapper
