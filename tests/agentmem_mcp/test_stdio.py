"""``agentmem mcp`` over stdio, driven by the official MCP client against real servers."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from agentmem.devservers import ServerUrls
from tests.agentmem_mcp.clients import ToolError, stdio_tools
from tests.orchestrator.runs import cli_env

pytestmark = pytest.mark.anyio


async def test_every_store_is_reachable_as_tools(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """Facts, documents, events and status round-trip through the tools of one namespace."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)
    async with stdio_tools(env) as tools:
        ns = {"namespace": namespace}
        first = await tools.call(
            "facts_store", **ns, agent_id="a-1", fact="Streams came in 5.0.", category="streams"
        )
        again = await tools.call(
            "facts_store",
            **ns,
            agent_id="a-1",
            fact="Locks need fencing.",
            category="locks",
            metadata={"source": "02.md"},
            idempotency_key="k-1",
        )
        repeat = await tools.call(
            "facts_store",
            **ns,
            agent_id="a-1",
            fact="Locks need fencing.",
            category="locks",
            idempotency_key="k-1",
        )
        assert repeat["id"] == again["id"] != first["id"]
        locks = (await tools.call("facts_read", **ns, category="locks"))["facts"]
        assert [(f["fact"], f["metadata"]) for f in locks] == [
            ("Locks need fencing.", {"source": "02.md"})
        ]
        assert (await tools.call("facts_categories", **ns))["categories"] == ["locks", "streams"]

        written = await tools.call(
            "doc_write", **ns, key="plan", value={"steps": 1}, agent_id="a-1", expected_version=0
        )
        await tools.call(
            "doc_write", **ns, key="plan", value={"steps": 2}, agent_id="a-2", expected_version=1
        )
        assert written["version"] == 1
        latest = await tools.call("doc_read", **ns, key="plan")
        assert (latest["value"], latest["version"], latest["agent_id"]) == ({"steps": 2}, 2, "a-2")
        assert (await tools.call("doc_read", **ns, key="nothing"))["found"] is False
        history = (await tools.call("doc_history", **ns, key="plan"))["versions"]
        assert [v["value"]["steps"] for v in history] == [1, 2]

        published = await tools.call(
            "event_publish",
            **ns,
            stream="work",
            event_type="task.done",
            agent_id="a-1",
            payload={"task": 7},
        )
        events = (await tools.call("events_read", **ns, stream="work"))["events"]
        assert [(e["event_id"], e["event_type"], e["payload"]) for e in events] == [
            (published["event_id"], "task.done", {"task": 7})
        ]
        after = await tools.call("events_read", **ns, stream="work", after=published["event_id"])
        assert after["events"] == []

        await tools.call("status_set", **ns, agent_id="a-1", status="working", detail="step 2")
        agents = (await tools.call("status_list", **ns))["agents"]
        assert [(s["agent_id"], s["status"], s["detail"]) for s in agents] == [
            ("a-1", "working", "step 2")
        ]


async def test_memory_errors_become_tool_errors_with_their_message(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """A conflict, a stale or missing fencing token and a bad id are tool errors naming the
    error and saying what to do; the server keeps serving."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)
    async with stdio_tools(env) as tools:
        ns = {"namespace": namespace}
        await tools.call("doc_write", **ns, key="d", value=1, agent_id="a", expected_version=0)
        with pytest.raises(
            ToolError,
            match=r"ConflictError: version conflict on 'd': expected "
            r"version 0, found 1; read the document again and retry",
        ):
            await tools.call("doc_write", **ns, key="d", value=2, agent_id="a", expected_version=0)

        lock = {"resource": "r", "agent_id": "a"}
        first = await tools.call("lock_acquire", **ns, **lock, ttl_seconds=0.2)
        second = await tools.call("lock_acquire", **ns, **lock, ttl_seconds=30, wait_seconds=10)
        assert second["fencing_token"] > first["fencing_token"]
        await tools.call(
            "doc_write", **ns, key="f", value=1, agent_id="a", fencing_token=second["fencing_token"]
        )
        with pytest.raises(ToolError, match="StaleFencingTokenError: write to 'f' rejected"):
            await tools.call(
                "doc_write",
                **ns,
                key="f",
                value=2,
                agent_id="a",
                fencing_token=first["fencing_token"],
            )
        with pytest.raises(ToolError, match="UnfencedWriteError: write to 'f' rejected"):
            await tools.call("doc_write", **ns, key="f", value=3, agent_id="a")
        with pytest.raises(ToolError, match=r"InvalidIdError: namespace .* control characters"):
            await tools.call("facts_categories", namespace="a\nb")
        with pytest.raises(ToolError, match="InvalidValueError: fact text is blank"):
            await tools.call("facts_store", **ns, agent_id="a", fact=" ", category="c")
        assert (await tools.call("doc_read", **ns, key="f"))["value"] == 1


async def test_a_lease_the_client_stops_renewing_expires(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """A lease is held while renewed; once its holder stops renewing, another client gets the
    lock with a larger fencing token, and the old lease can neither renew nor release it."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)
    async with stdio_tools(env) as one, stdio_tools(env) as two:
        ns = {"namespace": namespace, "resource": "report"}
        held = await one.call("lock_acquire", **ns, agent_id="one", ttl_seconds=1.0)
        assert held["acquired"]
        lease = {"agent_id": "one", "lease_token": held["lease_token"]}
        for _ in range(3):  # renewed past its first TTL, still held
            assert (await one.call("lock_renew", **ns, **lease, ttl_seconds=1.0))["renewed"]
            assert not (await two.call("lock_acquire", **ns, agent_id="two"))["acquired"]
            await anyio.sleep(0.4)
        taken = await two.call("lock_acquire", **ns, agent_id="two", wait_seconds=30)
        assert taken["acquired"]
        assert taken["fencing_token"] > held["fencing_token"]
        assert not (await one.call("lock_renew", **ns, **lease))["renewed"]
        assert not (await one.call("lock_release", **ns, **lease))["released"]
        mine = {"agent_id": "two", "lease_token": taken["lease_token"]}
        assert (await two.call("lock_release", **ns, **mine))["released"]
        assert (await one.call("lock_acquire", **ns, agent_id="one"))["acquired"]


async def test_a_server_limited_to_namespaces_refuses_others(
    servers: ServerUrls, tmp_path: Path, namespace: str
) -> None:
    """``agentmem mcp --namespace N`` serves N and refuses any other namespace."""
    env = cli_env(servers.redis_url, servers.database_url, tmp_path)
    async with stdio_tools(env, "--namespace", namespace) as tools:
        assert (await tools.call("facts_categories", namespace=namespace))["categories"] == []
        with pytest.raises(ToolError, match=f"namespace 'other' is not served here.*{namespace}"):
            await tools.call("facts_categories", namespace="other")
