"""The run index as the orchestrator keeps it: an entry when a run starts, and when it ends.

``agentmem runs`` and the web view list runs from these entries
(:class:`memory.run_index.RunIndex`); nobody scans Redis keys to find them.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime

import anyio

from agentmem.memory import AgentMemoryError, EventStore, RunEntry, RunIndex, leaves
from agentmem.orchestrator.tracker import RunState

logger = logging.getLogger(__name__)

CLOSE_SECONDS = 5.0  # how long a failing run waits to record its end before giving up


async def open_entry(index: RunIndex, events: EventStore, run_id: str, topic: str) -> RunEntry:
    """Record that ``run_id`` is running; returns its entry (``resumed`` if it ran before)."""
    previous = await index.get(run_id)
    logged = await events.read_events(count=1)
    started = previous.started_at if previous is not None else datetime.now(UTC)
    entry = RunEntry(run_id=run_id, topic=topic, started_at=started, resumed=bool(logged))
    await index.put(entry)
    return entry


async def close_entry(
    index: RunIndex,
    entry: RunEntry,
    state: RunState,
    *,
    error: str | None = None,
    report_path: str | None = None,
) -> None:
    """Record how the run ended; shielded, so an interrupted run still says so (bounded)."""
    ended = entry.model_copy(
        update={
            "state": "failed" if error is not None else "completed",
            "sections": len(state.sections),
            "approved": sum(s.state.settled for s in state.sections.values()),
            "ended_at": datetime.now(UTC),
            "error": error,
            "report_path": report_path,
        }
    )
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_SECONDS):
        try:
            await index.put(ended)
        except AgentMemoryError as exc:
            logger.warning("could not record the end of run %s: %s", entry.run_id, exc)


def failure_text(exc: BaseException) -> str:
    """One line saying why the run ended early (for a task group's error, the errors in it)."""
    inside = leaves(exc)
    if inside != [exc]:
        return "; ".join(dict.fromkeys(failure_text(e) for e in inside))
    if isinstance(exc, KeyboardInterrupt | anyio.get_cancelled_exc_class()):
        return "interrupted"
    with contextlib.suppress(Exception):
        text = " ".join(str(exc).split())
        if text:
            return text
    return type(exc).__name__
