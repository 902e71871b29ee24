"""``/mcp`` on ``agentmem serve``: several server processes, several clients each."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import anyio
import pytest

from agentmem.devservers import ServerUrls
from tests.agentmem_mcp.clients import ToolError, http_tools, serve_process
from tests.orchestrator.runs import cli_env

pytestmark = pytest.mark.anyio

SERVERS = 2
CLIENTS_PER_SERVER = 4
INCREMENTS = 5


async def test_two_server_processes_lose_no_update_of_a_shared_document(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """2 server processes x 4 clients each increment one counter by read, then write with
    expected_version, retrying on ConflictError: the count is exact and every version kept."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)
    conflicts = 0

    async def client(url: str, name: str) -> None:
        nonlocal conflicts
        async with http_tools(url) as tools:
            done = 0
            while done < INCREMENTS:
                doc = await tools.call("doc_read", namespace=namespace, key="counter")
                count, version = (doc["value"], doc["version"]) if doc["found"] else (0, 0)
                try:
                    await tools.call(
                        "doc_write",
                        namespace=namespace,
                        key="counter",
                        value=count + 1,
                        agent_id=name,
                        expected_version=version,
                    )
                except ToolError as exc:
                    if "ConflictError" not in str(exc):
                        raise
                    conflicts += 1
                    continue
                done += 1

    with ExitStack() as stack:
        urls = [stack.enter_context(serve_process(env)) for _ in range(SERVERS)]
        async with anyio.create_task_group() as tg:
            for s, url in enumerate(urls):
                for c in range(CLIENTS_PER_SERVER):
                    tg.start_soon(client, url, f"server{s}-client{c}")
        async with http_tools(urls[0]) as tools:
            final = await tools.call("doc_read", namespace=namespace, key="counter")
            history = await tools.call("doc_history", namespace=namespace, key="counter")
    total = SERVERS * CLIENTS_PER_SERVER * INCREMENTS
    assert final["value"] == total
    assert [v["value"] for v in history["versions"]] == list(range(1, total + 1))
    writers = {v["agent_id"] for v in history["versions"]}
    assert len(writers) == SERVERS * CLIENTS_PER_SERVER
