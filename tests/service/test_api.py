"""The service over HTTP: ``agentmem serve`` takes runs on ``/api/runs`` (issue 19)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentmem.devservers import ServerUrls
from tests.memory.blackhole import BlackholeProxy
from tests.memory.test_boundary import port_of, through_proxy, via
from tests.orchestrator.runs import ROOT, SOURCES, cli_env
from tests.service.pool import Pool
from tests.service.test_pool import cli

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]


@dataclass
class Reply:
    status_code: int
    text: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.text)


def request(method: str, url: str, body: bytes | None = None, **headers: str) -> Reply:
    """One HTTP request from this process (the server is another), never raising on 4xx."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            return Reply(reply.status, reply.read().decode(), _lower(reply.headers.items()))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read().decode(), _lower(exc.headers.items()))


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


def post_json(url: str, body: object, **headers: str) -> Reply:
    return request(
        "POST", url, json.dumps(body).encode(), **{"Content-Type": "application/json", **headers}
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(env: dict[str, str]) -> Generator[str, None, None]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agentmem.cli.main", "serve", "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request("GET", f"{url}/api/runs/none")
                break
            except OSError:
                assert time.monotonic() < deadline, "agentmem serve did not start"
                time.sleep(0.2)
        yield url
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


@pytest.fixture
def env(servers: ServerUrls, tmp_path: Path) -> dict[str, str]:
    return cli_env(
        servers.redis_url,
        servers.database_url,
        tmp_path,
        AGENTMEM_TENANT_MAX_INFLIGHT="1",
        AGENTMEM_TENANT_MAX_QUEUED="1",
    )


@pytest.fixture
def api(env: dict[str, str]) -> Iterator[str]:
    yield from _serve(env)


def _sources() -> list[dict[str, str]]:
    return [{"name": p.name, "text": p.read_text()} for p in sorted(SOURCES.glob("*.md"))]


def test_a_run_posted_over_http_completes_on_the_pool(
    env: dict[str, str], api: str, tmp_path: Path, namespace: str
) -> None:
    """POST /api/runs answers 202 with the id; GET follows it to completed; the page shows it."""
    pool = Pool(env, tmp_path / "workers")
    pool.start_all()
    try:
        body = {"tenant": f"web-{namespace}", "topic": "over HTTP", "sources": _sources()}
        posted = post_json(f"{api}/api/runs", body)
        assert posted.status_code == 202, posted.text
        run_id = posted.json()["run_id"]
        again = post_json(f"{api}/api/runs", body)
        assert again.status_code == 202
        assert again.json()["run_id"] == run_id
        deadline = time.monotonic() + 150
        while (state := request("GET", f"{api}/api/runs/{run_id}").json())["state"] != "completed":
            assert state["state"] in {"queued", "running"}, state
            assert time.monotonic() < deadline, pool.logs()
            time.sleep(0.3)
        assert Path(state["report_path"]).exists()
        page = request("GET", f"{api}/runs/{run_id}")
        assert page.status_code == 200
        assert "over HTTP" in page.text
    finally:
        pool.stop()


def test_a_full_tenant_queue_is_refused_at_once_with_429(
    env: dict[str, str], api: str, namespace: str
) -> None:
    """With one run in flight and one waiting, the next is refused: 429, Retry-After; CLI: 1."""
    tenant = f"full-{namespace}"
    codes = []
    for n in range(3):
        body = {"tenant": tenant, "topic": f"run {n}", "sources": _sources()}
        reply = post_json(f"{api}/api/runs", body)
        codes.append(reply.status_code)
    assert codes == [202, 202, 429]
    assert int(reply.headers["retry-after"]) >= 1
    refused = cli(env, "submit", "--tenant", tenant, "--topic", "one more")
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "runs in flight" in refused.stderr


def test_browser_requests_from_another_site_are_refused(api: str) -> None:
    """A POST with a foreign Origin gets 403; a form body (no JSON) gets 415."""
    body = {"tenant": "x", "topic": "t", "sources": _sources()}
    foreign = post_json(f"{api}/api/runs", body, Origin="http://evil.example")
    assert foreign.status_code == 403
    form = request(
        "POST",
        f"{api}/api/runs",
        b"tenant=x",
        **{"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415


def test_metrics_and_status_show_backlog_slots_and_tenants(
    env: dict[str, str], api: str, namespace: str
) -> None:
    """/metrics (Prometheus text) and ``agentmem status`` show the research backlog, the
    tenant's run in flight and the one waiting; ``status --json`` the same as one object."""
    tenant = f"metrics-{namespace}"
    for n in range(2):
        body = {"tenant": tenant, "topic": f"metrics {n}", "sources": _sources()}
        assert post_json(f"{api}/api/runs", body).status_code == 202
    metrics = request("GET", f"{api}/metrics")
    assert metrics.status_code == 200
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['agentmem_backlog{role="research"}'] >= 1
    assert 'agentmem_oldest_waiting_seconds{role="writer"}' in samples
    assert 'agentmem_slots{role="review",state="free"}' in samples
    assert samples[f'agentmem_tenant_runs_in_flight{{tenant="{tenant}"}}'] == 1
    assert samples[f'agentmem_runs{{state="queued",tenant="{tenant}"}}'] == 1
    assert samples[f'agentmem_runs{{state="running",tenant="{tenant}"}}'] == 1
    shown = cli(env, "status")
    assert shown.returncode == 0, shown.stderr
    assert any(line.split()[:3] == [tenant, "1", "1"] for line in shown.stdout.splitlines())
    assert shown.stdout.splitlines()[0].split()[:3] == ["role", "backlog", "pending"]
    scripted = cli(env, "status", "--json")
    assert scripted.returncode == 0, scripted.stderr
    figures = json.loads(scripted.stdout)
    assert {"tenant": tenant, "in_flight": 1, "waiting": 1} in figures["tenants"]
    assert {"state": "queued", "tenant": tenant, "count": 1} in figures["runs"]
    assert {r["role"] for r in figures["roles"]} >= {"research", "writer", "review"}


@through_proxy
async def test_a_submission_while_redis_is_unreachable_gets_503_saying_to_submit_again(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """Redis stops answering mid-service: POST /api/runs answers 503 in one line, not a 500."""
    async with BlackholeProxy(port_of(servers.redis_url)).running() as proxy:
        env = cli_env(
            via(servers.redis_url, proxy.port),
            servers.database_url,
            tmp_path,
            AGENTMEM_COMMAND_TIMEOUT_SECONDS="1",
        )
        serving = _serve(env)
        api = await anyio.to_thread.run_sync(next, serving)
        try:
            proxy.blackholed = True
            body = {"tenant": "cut-off", "topic": "t", "sources": _sources()[:1]}
            reply = await anyio.to_thread.run_sync(post_json, f"{api}/api/runs", body)
        finally:
            proxy.blackholed = False
            await anyio.to_thread.run_sync(serving.close)

    assert reply.status_code == 503, reply.text
    assert "submit again" in reply.json()["error"]


def test_json_nested_too_deeply_is_refused_with_400(api: str) -> None:
    """A body of arrays nested 200,000 deep is a bad submission (400), not a server error."""
    body = b"[" * 200_000 + b"]" * 200_000

    reply = request("POST", f"{api}/api/runs", body, **{"Content-Type": "application/json"})

    assert reply.status_code == 400, reply.text
    assert "nested too deeply" in reply.json()["error"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tenant": "a/b c"}, "tenant name"),
        ({"sources": [{"name": "a.md", "text": "Hello\u0000world."}]}, "NUL"),
    ],
)
def test_a_submission_the_cli_would_refuse_is_refused_over_http_too(
    api: str, change: dict[str, Any], message: str
) -> None:
    """A tenant name no key can have, or a NUL in a source, is a 400 at submission, not a
    run that fails later."""
    body = {"tenant": "fine", "topic": "t", "sources": _sources()[:1], **change}

    reply = post_json(f"{api}/api/runs", body)

    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]


def test_of_identical_submissions_sent_at_once_exactly_one_says_it_made_the_run(
    api: str, namespace: str
) -> None:
    """Twelve copies of one submission at the same time: one run, and one answer (not none)
    says it started or queued it; the others say duplicate."""
    body = {"tenant": "racer", "topic": f"race {namespace}", "sources": _sources()[:1]}
    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda _: post_json(f"{api}/api/runs", body), range(12)))

    assert {r.status_code for r in replies} == {202}
    assert len({r.json()["run_id"] for r in replies}) == 1
    states = sorted(r.json()["state"] for r in replies)
    assert states.count("duplicate") == 11, states
