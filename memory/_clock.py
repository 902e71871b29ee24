"""The clock lease deadlines are kept on: one that keeps counting while the machine sleeps.

``time.monotonic()`` (and asyncio's loop clock, built on it) stops during a system suspend on
Linux, so a deadline kept on it can pass a lease that the server expired long ago. Leases and
permits keep their local deadlines on ``CLOCK_BOOTTIME``, which counts suspended time; where it
does not exist (not Linux) on ``time.monotonic()``.
"""

from __future__ import annotations

import time

_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def now() -> float:
    """Seconds on the deadline clock (an arbitrary origin, never going back)."""
    if _BOOTTIME is None:
        return time.monotonic()
    return time.clock_gettime(_BOOTTIME)
