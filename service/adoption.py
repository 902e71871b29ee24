"""Orphaned local logs: the writes a dead worker could not send, sent by a live one.

A pool worker keeps the writes it made while Redis was unreachable in a local log per run,
``<data_dir>/wal/<run>/<worker>.db`` (:class:`~memory.wal.WriteAheadLog`). Worker names are
new with each process, so no later worker opens a dead worker's log by name: without adoption
its writes would be sent only if the handoff that made them were redelivered, and a handler
that had acknowledged its handoff (the writes were safe on disk) would have lost them.

Each log is held by its live owner with an OS lock that dies with the process
(:meth:`~memory.wal.WriteAheadLog.adopt`). A worker of an agent role passes over
``<data_dir>/wal/`` at start and every reclaim interval (:func:`adopt_orphans`); for each log
whose lock it can take:

- **a run still running** (or not yet in the run index): its entries are sent, oldest first,
  through the run's :class:`~service.routes.TicketingWriter`, exactly as the dead worker
  would have sent them: order kept, handoffs ticketed once in the stream, and idempotency keys
  make an entry the dead worker had already sent a no-op. The file is deleted once empty; what
  Redis does not take now stays for the next pass (the lock is released in between);
- **a run that ended** (completed, failed, timed out): nothing is sent. Its report is final
  and a late handoff would only be acknowledged unhandled; the file is renamed
  ``<worker>.db.run-ended`` with one warning line, and kept for recovery by hand;
- **entries that fail for good** (no valid write) go to the log's quarantine table, as they
  do for the owner; a log left holding only those is renamed ``<worker>.db.quarantined``.

A log whose owner is alive is never touched (its lock is held), and of two adopters racing for
one orphan exactly one takes it. Logs of runs the pool was never given (``agentmem run``'s
agents, which reopen their own log by instance when their supervisor restarts them) are left
alone. A run id too long for a folder name gets a cut, hashed folder holding the id in
:data:`RUN_ID_FILE` (:func:`run_log_path`). The promise holds for workers that share
``<data_dir>`` (one host, or a volume the replacement mounts): a log on a disk that went away
with its host is beyond any adopter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote

import anyio
import anyio.to_thread

from agentmem.agents.settings import Settings
from agentmem.memory import AgentMemoryError, Memory, WriteAheadLog, path_part, validate_id
from agentmem.memory.admission import Submissions
from agentmem.memory.work_queue import DEFAULT_TENANT, WorkQueue
from agentmem.service.coordinator import run_events
from agentmem.service.routes import TicketingWriter

logger = logging.getLogger(__name__)

_SEND_SECONDS = 10.0  # what one pass spends on one log at most


RUN_ID_FILE = "run-id.txt"  # in a run's folder whose name was cut: the run id it stands for


def run_log_path(wal_dir: Path, run_id: str, worker: str) -> Path:
    """Where ``worker`` keeps its local log of ``run_id``: ``<wal_dir>/<run>/<worker>.db``.

    A run id too long for a folder name gets a cut, hashed name (:func:`memory.path_part`);
    the folder then also holds :data:`RUN_ID_FILE`, so that an adopter knows whose it is."""
    folder = wal_dir / path_part(run_id, "run id")
    if "~" in folder.name and not (folder / RUN_ID_FILE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fresh = folder / f".{RUN_ID_FILE}.{worker}"
        fresh.write_text(run_id, encoding="utf-8")
        os.replace(fresh, folder / RUN_ID_FILE)  # whole or absent; every writer writes the same
    return folder / f"{worker}.db"


def _run_of(folder: Path) -> str | None:
    """The run id ``folder`` stands for, or None when it stands for no valid one."""
    if "~" in folder.name:  # cut: the id is in the folder, and must give the folder's name
        try:
            run_id = (folder / RUN_ID_FILE).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    else:
        run_id = unquote(folder.name)
    try:
        validate_id(run_id, "run id")
    except AgentMemoryError:
        return None
    return run_id if path_part(run_id, "run id") == folder.name else None


def orphan_candidates(wal_dir: Path, own: str) -> list[tuple[str, Path]]:
    """``(run id, path)`` of each log under ``wal_dir`` not named ``own`` (the caller's):
    ``<run>/<name>.db``, the run id from its folder's name (or, for a cut name, from the
    :data:`RUN_ID_FILE` in it)."""
    found = []
    if not wal_dir.is_dir():
        return []
    for folder in sorted(wal_dir.iterdir()):
        run_id = _run_of(folder) if folder.is_dir() else None
        if run_id is None:
            continue
        found += [(run_id, path) for path in sorted(folder.glob("*.db")) if path.stem != own]
    return found


async def adopt_orphans(
    root: Memory, settings: Settings, queues: Mapping[str, WorkQueue], issuer: str
) -> int:
    """One pass over ``<data_dir>/wal/``: send each orphaned log of a running pool run (see
    the module's notes); returns how many logs it took."""
    wal_dir = Path(settings.data_dir) / "wal"
    taken = 0
    tenants: dict[str, str | None] = {}
    for run_id, path in await anyio.to_thread.run_sync(orphan_candidates, wal_dir, issuer):
        scope = root.scope(run_id)
        if run_id not in tenants:
            try:
                tenants[run_id] = await Submissions(scope.client).tenant_of(run_id)
            except AgentMemoryError as exc:
                logger.warning("cannot look at %s's orphaned logs now: %s", run_id, exc)
                return taken
        tenant = tenants[run_id]
        if tenant is None:  # not a pool run: its agents reopen their own logs
            continue
        tenant = tenant or DEFAULT_TENANT
        wal = await anyio.to_thread.run_sync(WriteAheadLog.adopt, path)
        if wal is None:  # its owner is alive, or another adopter took it
            continue
        taken += 1
        try:
            await _send(
                wal, run_id, tenant, scope=scope, settings=settings, queues=queues, issuer=issuer
            )
        finally:
            wal.close()  # (a no-op once removed or set aside)
    return taken


async def _send(
    wal: WriteAheadLog,
    run_id: str,
    tenant: str,
    *,
    scope: Memory,
    settings: Settings,
    queues: Mapping[str, WorkQueue],
    issuer: str,
) -> None:
    """Send one adopted log of ``run_id``, then delete it, set it aside, or leave it."""
    held = await wal.count()
    try:
        known = await scope.runs.get(run_id)
    except AgentMemoryError as exc:
        logger.warning("left %s for later: cannot read run %s (%s)", wal.path, run_id, exc)
        return
    if held and known is not None and known.state != "running":
        aside = wal.set_file_aside("run-ended")
        logger.warning(
            "orphaned log %s holds %d writes of run %s, which ended (%s): not sent; kept as %s",
            wal.path,
            held,
            run_id,
            known.state,
            aside,
        )
        return
    events = run_events(scope, settings)
    writer = TicketingWriter(scope.memory, events, wal, queues, issuer, tenant=tenant)
    left = held
    with anyio.move_on_after(_SEND_SECONDS):
        while left:
            before, left = left, await writer.flush()
            if left >= before:  # Redis did not take any (unreachable, or awaiting a replica)
                break
    if left:
        logger.warning(
            "adopted %s: %d of its %d writes not sent yet; left for the next pass",
            wal.path,
            left,
            held,
        )
        return
    if wal.quarantined():
        aside = wal.set_file_aside("quarantined")
        logger.error("adopted %s: its set-aside entries are kept as %s", wal.path, aside)
        return
    path = wal.path
    wal.remove()
    if held:
        logger.info("adopted %s: sent its %d writes to run %s", path, held, run_id)
