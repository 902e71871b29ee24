"""A local log is held by its live owner; once the owner dies, one adopter takes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from agentmem.memory.agent_memory import RedisAgentMemory
from agentmem.memory.connections import RedisClient
from agentmem.memory.durable import DurableWriter
from agentmem.memory.errors import WalBusyError
from agentmem.memory.events import AgentEvent, EventStore
from agentmem.memory.wal import WriteAheadLog

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parents[2]


def _event(n: int) -> dict[str, object]:
    event = AgentEvent(event_type="hello", agent_id="dead-1", payload={"n": n})
    return {"event": event.model_dump(mode="json"), "idempotency_key": f"hello-{n}"}


def _owner(path: Path, entries: int) -> subprocess.Popen[str]:
    """A process that logs ``entries`` publishes in the log at ``path``, says so, and waits."""
    script = (
        "import anyio, json, sys\n"
        "from pathlib import Path\n"
        "from agentmem.memory.wal import WriteAheadLog\n"
        "async def main():\n"
        f"    wal = WriteAheadLog(Path({str(path)!r}))\n"
        f"    for args in json.loads({_entries_json(entries)!r}):\n"
        "        await wal.append('publish', args)\n"
        "    print('logged', flush=True)\n"
        "    await anyio.sleep(600)\n"
        "anyio.run(main)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert owner.stdout is not None
    assert owner.stdout.readline().strip() == "logged"
    return owner


def _kill(owner: subprocess.Popen[str]) -> None:
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    assert owner.stdout is not None
    owner.stdout.close()


def _entries_json(entries: int) -> str:
    return json.dumps([_event(n) for n in range(entries)])


async def test_a_live_owners_log_is_never_adopted_and_a_killed_ones_is(tmp_path: Path) -> None:
    """While its owner lives, a log can be neither adopted nor opened; once the owner is
    SIGKILLed, an adopter gets it with every entry, in order."""
    path = tmp_path / "run" / "writer-dead.db"
    owner = _owner(path, 3)
    try:
        assert WriteAheadLog.adopt(path) is None
        with pytest.raises(WalBusyError):
            WriteAheadLog(path)
    finally:
        _kill(owner)
    adopted = WriteAheadLog.adopt(path)
    assert adopted is not None
    async with adopted:
        assert [e.args["idempotency_key"] for e in await adopted.pending()] == [
            "hello-0",
            "hello-1",
            "hello-2",
        ]


async def test_two_adopters_racing_for_one_orphan_get_it_once(tmp_path: Path) -> None:
    """Of two adopters that try at once, exactly one gets the orphan; once it removed the
    emptied log, a later adopter finds nothing, and no file is left."""
    path = tmp_path / "run" / "writer-dead.db"
    async with WriteAheadLog(path) as wal:
        seq = await wal.append("publish", _event(0))
    got: list[WriteAheadLog | None] = []

    async def adopt() -> None:
        got.append(await anyio.to_thread.run_sync(WriteAheadLog.adopt, path))

    async with anyio.create_task_group() as tg:
        tg.start_soon(adopt)
        tg.start_soon(adopt)
    winners = [wal for wal in got if wal is not None]
    assert len(winners) == 1
    [winner] = winners
    await winner.done(seq)
    assert winner.remove()
    assert WriteAheadLog.adopt(path) is None
    assert list(path.parent.iterdir()) == []


async def test_an_adopted_log_is_sent_in_order_and_each_write_once(
    tmp_path: Path, redis_client: RedisClient, namespace: str
) -> None:
    """A killed writer's log whose first entry had already reached Redis: the adopter's
    writer sends the rest, in order, and the stream holds each event once."""
    memory = RedisAgentMemory(redis_client, namespace)
    events = EventStore(redis_client, namespace)
    first = _event(0)
    await events.publish_keyed([(AgentEvent.model_validate(first["event"]), "hello-0")])
    path = tmp_path / "run" / "writer-dead.db"
    _kill(_owner(path, 4))

    adopted = WriteAheadLog.adopt(path)
    assert adopted is not None
    assert await DurableWriter(memory, events, adopted).flush() == 0
    assert adopted.remove()
    assert [e.payload["n"] for e in await events.read_events()] == [0, 1, 2, 3]
