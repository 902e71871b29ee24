"""The clients made in ``memory.connections``: what they tell the server, how URLs are shown."""

from __future__ import annotations

from importlib import metadata
from urllib.parse import urlsplit, urlunsplit

import pytest

from agentmem.devservers import ServerUrls
from agentmem.memory.connections import (
    MemoryConfig,
    postgres_pool,
    redact,
    redis_client,
    redis_urls,
)
from agentmem.memory.errors import InvalidConfigError

pytestmark = pytest.mark.anyio


async def test_every_new_redis_connection_names_the_library_and_its_version(
    servers: ServerUrls,
) -> None:
    """Each connection of a client says redis-py and its version (looked up once per process)."""
    config = MemoryConfig(servers.redis_url, client_name="agentmem:test")
    for _ in range(2):  # two clients, so two connections made from the one identity
        client = redis_client(config, redis_urls(config)[0])
        try:
            info = await client.client_info()
        finally:
            await client.aclose()
        assert info["lib-name"] == "redis-py"
        assert info["lib-ver"] == metadata.version("redis")
        assert str(info["name"]).startswith("agentmem:test/")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://app@db:5432/agentmem?password=s3cret&sslmode=require",
            "postgresql://app@db:5432/agentmem?password=***&sslmode=require",
        ),
        (
            "redis://cache:6379/0?Auth_Token=s3cret&client_secret=s3cret&x=1",
            "redis://cache:6379/0?Auth_Token=***&client_secret=***&x=1",
        ),
        ("postgresql://app:s3cret@db/agentmem?sslpassword=s3cret", None),
        ("redis://a:1?pass%77ord=s3cret,redis://b:2?passphrase=s3cret", None),
    ],
)
def test_redact_hides_passwords_and_tokens_in_the_query_string(url: str, shown: str | None) -> None:
    """A query parameter named like a secret (pass, secret, token) is shown as ***."""
    assert "s3cret" not in redact(url)
    if shown is not None:
        assert redact(url) == shown


async def test_a_refused_password_given_in_the_query_string_stays_out_of_the_error(
    servers: ServerUrls,
) -> None:
    """PostgreSQL refuses ?password=: the InvalidConfigError names the URL without it."""
    parts = urlsplit(servers.database_url)
    netloc = f"nosuchuser@{parts.hostname}:{parts.port}"
    dsn = urlunsplit(parts._replace(netloc=netloc, query="password=s3cret"))
    config = MemoryConfig(servers.redis_url, dsn, connect_timeout=5)
    with pytest.raises(InvalidConfigError) as caught:
        await postgres_pool(config, dsn)
    assert "nosuchuser" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_from_env_reads_the_documented_variables_as_the_application_does() -> None:
    """MemoryConfig.from_env() and the application's settings read one environment alike."""
    from agentmem.agents import Settings  # the application, compared with the library

    env = {
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DATABASE_URL": "postgresql://u@127.0.0.1:2/db",
        "DATABASE_READ_URL": "postgresql://u@127.0.0.1:3/db",
        "AGENTMEM_CONNECT_TIMEOUT_SECONDS": "2.5",
        "AGENTMEM_COMMAND_TIMEOUT_SECONDS": "7",
        "AGENTMEM_MAX_FACT_BYTES": "1000",
        "AGENTMEM_MAX_EVENT_BYTES": "2000",
        "AGENTMEM_MAX_DOCUMENT_BYTES": "3000",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        expected = Settings().memory_config()

    assert MemoryConfig.from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "REDIS_URL is not set"),
        ({"REDIS_URL": "redis://h", "AGENTMEM_COMMAND_TIMEOUT_SECONDS": "soon"}, "COMMAND"),
        ({"REDIS_URL": "redis://h", "AGENTMEM_MAX_FACT_BYTES": "-1"}, "MAX_FACT_BYTES"),
    ],
)
def test_from_env_names_the_variable_that_is_missing_or_malformed(
    env: dict[str, str], named: str
) -> None:
    """A missing REDIS_URL or a malformed number is one error naming the variable."""
    with pytest.raises(InvalidConfigError, match=named):
        MemoryConfig.from_env(env)
