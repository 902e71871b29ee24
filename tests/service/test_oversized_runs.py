"""A run whose request is over the event cap: refused before it is admitted, and a sweep that
meets one (or any error on one run) fails or skips that run and goes on with the others."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from agentmem.agents.settings import Settings
from agentmem.devservers import ServerUrls
from agentmem.memory import open_memory
from agentmem.memory.admission import Admission, Submissions
from agentmem.memory.keys import tenant_key
from agentmem.protocol.events import RunRequested, SourceDoc
from agentmem.service.coordinator import sweep
from agentmem.service.submit import queues_of, run_state
from tests.orchestrator.runs import cli_env
from tests.service.test_api import _serve, post_json
from tests.service.test_pool import cli

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

BIG = "x" * (1024 * 1024 + 300 * 1024)  # 1.3 MB: over the default 1 MB cap on one event
SMALL = [{"name": "a.md", "text": "A small source about shared memory."}]


def _settings(servers: ServerUrls) -> Settings:
    return Settings(
        redis_url=SecretStr(servers.redis_url), database_url=SecretStr(servers.database_url)
    )


@pytest.fixture
def env(servers: ServerUrls, tmp_path: Path) -> dict[str, str]:
    return cli_env(
        servers.redis_url, servers.database_url, tmp_path, AGENTMEM_TENANT_MAX_INFLIGHT="1"
    )


@pytest.fixture
def api(env: dict[str, str]) -> Iterator[str]:
    yield from _serve(env)


async def test_an_oversized_submission_gets_413_leaves_nothing_and_smaller_is_accepted(
    api: str, servers: ServerUrls, namespace: str
) -> None:
    """With a run in flight, a body whose request is over the event cap gets 413 (twice: it
    was not admitted), leaves no claim, entry or queued run, and made smaller it is queued."""
    tenant, big = f"t-{namespace}", f"{namespace}-big"
    first = post_json(f"{api}/api/runs", {"tenant": tenant, "topic": "T", "sources": SMALL})
    assert first.status_code == 202, first.text
    body = {"tenant": tenant, "topic": "T", "run_id": big, "sources": [{"name": "b", "text": BIG}]}
    for _ in range(2):
        reply = post_json(f"{api}/api/runs", body)
        assert reply.status_code == 413, reply.text
        error = reply.json()["error"]
        assert "\n" not in error
        assert "1.3 MB" in error
        assert "1.0 MB" in error
    config = _settings(servers).memory_config(client_name="agentmem:test")
    async with open_memory(config, "service", migrate=False) as root:
        assert await Submissions(root.client).tenant_of(big) is None
        assert await root.runs.get(big) is None
        assert await Admission(root.client, tenant).counts() == (1, 0)
    body["sources"] = SMALL
    reply = post_json(f"{api}/api/runs", body)
    assert reply.status_code == 202, reply.text
    assert reply.json()["state"] == "queued"


def test_the_cli_refuses_an_oversized_submission_in_one_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    """``agentmem submit`` with sources over the event cap exits 1 with one line, each time."""
    sources = tmp_path / "big"
    sources.mkdir()
    for name in ("one.md", "two.md"):  # each under the loader's cap per file, both over 1 MB
        (sources / name).write_text(BIG[: len(BIG) // 2])
    for _ in range(2):  # the same again: refused again, not taken as a duplicate
        done = cli(env, "submit", "--tenant", "cli-big", "--sources", str(sources))
        assert done.returncode == 1, done.stdout
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "over the cap of 1.0 MB" in lines[0]


async def test_a_sweep_fails_an_unstartable_run_and_goes_on_with_the_others(
    servers: ServerUrls, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A run kept in flight with a request over the event cap (tenant sorted first) fails
    with the reason and frees its place for the tenant's next run; a tenant whose runs cannot
    be read is skipped; a later tenant's run in flight is still started in the same pass."""
    settings = _settings(servers)
    bad_tenant, good_tenant = f"a-{namespace}", f"b-{namespace}"
    bad, waiting, good = f"{namespace}-bad", f"{namespace}-waiting", f"{namespace}-good"
    small = RunRequested(topic="T", sources=[SourceDoc(name="a", text="A small source.")])
    big = RunRequested(topic="T", sources=[SourceDoc(name="b", text=BIG)])
    config = settings.memory_config(client_name="agentmem:test")
    async with open_memory(config, "service", migrate=False) as root:
        a, b = Admission(root.client, bad_tenant), Admission(root.client, good_tenant)
        for admission, run_id in ((a, bad), (a, waiting), (b, good)):
            await admission.claim(run_id)
        assert await a.admit(bad, big.model_dump_json(), limit=1, max_queued=5) == "start"
        assert await a.admit(waiting, small.model_dump_json(), limit=1, max_queued=5) == "queued"
        assert await b.admit(good, small.model_dump_json(), limit=1, max_queued=5) == "start"
        broken = f"{bad_tenant}-broken"  # sorted between the two
        await Admission(root.client, broken).claim(f"{namespace}-broken")
        await root.client.set(tenant_key(broken, "inflight"), "not a set")
        try:
            with caplog.at_level(logging.WARNING, logger="agentmem.service.coordinator"):
                await sweep(root, settings, queues_of(root, settings), "test-sweep")
        finally:  # other tests' sweeps need not meet it
            await root.client.delete(tenant_key(broken, "inflight"))
        failed = await run_state(root, bad)
        assert failed.state == "failed"
        assert "larger than its cap" in (failed.error or "")
        lines = [r.getMessage() for r in caplog.records]
        assert all("\n" not in line for line in lines), lines
        assert any(bad in line for line in lines), lines
        assert any(broken in line for line in lines), lines
        assert await a.in_flight() == [(waiting, None)]  # the next run took its place, started
        assert (await run_state(root, waiting)).state == "running"
        assert await b.in_flight() == [(good, None)]
        assert (await run_state(root, good)).state == "running"
