"""A process that must not outlive its parent: agents, their zygote, the local servers.

``prctl(PR_SET_PDEATHSIG)`` asks the kernel to signal a process when its parent exits, however
the parent exits (killed included). It lives here, not in :mod:`devservers`, so that an agent
process can use it without importing the embedded servers; :mod:`devservers` imports it from
here (imports point from the development tooling to the agents, never back).
"""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A ``preexec_fn`` that asks the kernel to send ``sig`` when the parent exits."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return preexec
