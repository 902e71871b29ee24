"""Every CLI command turns a bad URL, refused credentials or a missing server into one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest

from agentmem.devservers import ServerUrls
from tests.memory.blackhole import BlackholeProxy
from tests.orchestrator.runs import ROOT

pytestmark = pytest.mark.anyio


async def agentmem(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    """Run the real CLI in a process of its own; its exit code, stdout and stderr."""
    result = await anyio.run_process(
        [sys.executable, "-m", "agentmem.cli.main", *args],
        env={
            **os.environ,
            "AGENTMEM_DATA_DIR": str(tmp_path / "data"),
            "AGENTMEM_REPORTS_DIR": str(tmp_path / "reports"),
            "AGENTMEM_CONNECT_TIMEOUT_SECONDS": "1",
            "AGENTMEM_COMMAND_TIMEOUT_SECONDS": "1",
            "COLUMNS": "300",
            **env,
        },
        cwd=ROOT,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def one_line_error(code: int, stderr: str) -> str:
    """The single error line, after checking there is nothing else (no traceback)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code != 0
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    "command", [["inspect", "r1"], ["dead-letters", "r1"], ["forget", "r1", "-y"]]
)
async def test_a_url_that_is_not_a_redis_url_is_one_line(
    servers: ServerUrls, tmp_path: Path, command: list[str]
) -> None:
    """REDIS_URL=notaurl: one line naming the setting, exit 1."""
    code, _, stderr = await agentmem(
        tmp_path, *command, REDIS_URL="notaurl", DATABASE_URL=servers.database_url
    )
    assert "not a Redis URL" in one_line_error(code, stderr)


async def test_a_wrong_postgres_password_is_one_line_without_the_secret(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """Refused credentials: one line, the password never shown."""
    parts = urlsplit(servers.database_url)
    wrong = urlunsplit(parts._replace(netloc=f"intruder:hunter2@{parts.hostname}:{parts.port}"))
    code, stdout, stderr = await agentmem(
        tmp_path, "inspect", "r1", REDIS_URL=servers.redis_url, DATABASE_URL=wrong
    )
    line = one_line_error(code, stderr)
    assert "refused the connection" in line
    assert "hunter2" not in stderr + stdout


async def test_an_unreachable_redis_is_one_line_for_inspect(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """Nothing listens at REDIS_URL: inspect says so in one line."""
    code, _, stderr = await agentmem(
        tmp_path,
        "inspect",
        "r1",
        REDIS_URL="redis://127.0.0.1:1/0",
        DATABASE_URL=servers.database_url,
    )
    assert "cannot reach Redis" in one_line_error(code, stderr)


async def test_a_blackholed_redis_is_one_line_within_the_timeouts(
    servers: ServerUrls, tmp_path: Path
) -> None:
    """Redis accepts connections and never answers: inspect ends with one line, in bounded time."""
    port = urlsplit(servers.redis_url).port
    assert port is not None
    async with BlackholeProxy(port).running() as proxy:
        proxy.blackholed = True
        with anyio.fail_after(30):
            code, _, stderr = await agentmem(
                tmp_path,
                "inspect",
                "r1",
                REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
                DATABASE_URL=servers.database_url,
            )
    assert "cannot reach Redis" in one_line_error(code, stderr)


async def test_openai_without_a_key_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """--llm openai with no OPENAI_API_KEY: exit 2 at once, no server or agent started."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    result = await anyio.run_process(
        [sys.executable, "-m", "agentmem.cli.main", "run", "--llm", "openai"],
        env={**env, "AGENTMEM_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "300"},
        cwd=ROOT,
        check=False,
    )
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in one_line_error(result.returncode, stderr)
    assert "starting local" not in stdout
