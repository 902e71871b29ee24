"""One retry policy for network and database calls, built on tenacity.

Bounded by attempts and by total delay, with jittered exponential backoff. Tests call
:func:`set_testing` so that retries do not sleep (as stamina's ``set_testing`` does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import tenacity

logger = logging.getLogger(__name__)

_testing = False


def set_testing(enabled: bool) -> None:
    """Make every retry wait zero seconds (for tests); attempts stay bounded."""
    global _testing  # noqa: PLW0603
    _testing = enabled


def _wait(initial: float, maximum: float) -> Callable[[tenacity.RetryCallState], float]:
    jittered = tenacity.wait_random_exponential(multiplier=initial, max=maximum)

    def wait(state: tenacity.RetryCallState) -> float:
        return 0.0 if _testing else float(jittered(state))

    return wait


def retrying(
    on: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool],
    *,
    attempts: int = 5,
    timeout: float = 30.0,
    initial: float = 0.05,
    maximum: float = 2.0,
) -> tenacity.AsyncRetrying:
    """An ``AsyncRetrying`` that retries only ``on`` these exceptions, within bounds.

    ``on`` is an exception type, a tuple of them, or a predicate on the exception.

    Use as ``async for attempt in retrying(...): with attempt: ...``; the last error is
    re-raised unchanged when the bounds are spent.
    """
    return tenacity.AsyncRetrying(
        retry=(
            tenacity.retry_if_exception_type(on)
            if isinstance(on, type | tuple)
            else tenacity.retry_if_exception(on)
        ),
        stop=tenacity.stop_after_attempt(attempts) | tenacity.stop_after_delay(timeout),
        wait=_wait(initial, maximum),
        reraise=True,
        before_sleep=_log_retry,
    )


def _log_retry(state: tenacity.RetryCallState) -> None:
    outcome: Any = state.outcome
    logger.debug(
        "retrying %s after attempt %d: %r",
        getattr(state.fn, "__qualname__", "call"),
        state.attempt_number,
        outcome.exception() if outcome is not None else None,
    )
