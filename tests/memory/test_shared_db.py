"""Versioned documents: optimistic locking, every version kept, retries, fencing tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum

import anyio
import asyncpg
import pytest

from agentmem.memory.errors import (
    ConflictError,
    InvalidIdError,
    InvalidValueError,
    StaleFencingTokenError,
    UnissuedFencingTokenError,
)
from agentmem.memory.shared_db import SharedAgentDB

pytestmark = pytest.mark.anyio


@pytest.fixture
async def db(pg_pool: asyncpg.Pool, namespace: str) -> SharedAgentDB:
    db = SharedAgentDB(pg_pool, namespace)
    await db.migrate()
    return db


async def test_values_round_trip_with_their_json_types(db: SharedAgentDB) -> None:
    """A document's value reads back equal, types included."""
    value = {"n": 1, "x": 1.5, "ok": True, "none": None, "list": [1, "a", {"b": []}], "s": "é"}
    written = await db.write("section/intro", value, "writer-1")

    read = await db.read("section/intro")

    assert read == written
    assert read is not None
    assert read.value == value
    assert (read.version, read.agent_id) == (1, "writer-1")
    assert read.created_at.utcoffset() == timedelta(0)
    assert abs(read.created_at - datetime.now(UTC)) < timedelta(seconds=10)


async def test_every_version_is_kept_with_its_author(db: SharedAgentDB) -> None:
    """History lists each version in order; any version can be read back."""
    for n, author in enumerate(["writer-1", "writer-2", "writer-1"], start=1):
        await db.write("doc", {"n": n}, author)

    history = await db.history("doc")

    assert [(d.version, d.value["n"], d.agent_id) for d in history] == [
        (1, 1, "writer-1"),
        (2, 2, "writer-2"),
        (3, 3, "writer-1"),
    ]
    old = await db.read("doc", version=2)
    assert old is not None
    assert old.value == {"n": 2}
    assert await db.read("doc", version=9) is None
    assert await db.read("missing") is None


async def test_a_stale_expected_version_conflicts_and_writes_nothing(db: SharedAgentDB) -> None:
    """Writing on top of an old version raises ConflictError naming key and versions."""
    await db.write("doc", "v1", "a", expected_version=0)
    await db.write("doc", "v2", "b", expected_version=1)

    with pytest.raises(ConflictError) as caught:
        await db.write("doc", "late", "a", expected_version=1)

    assert (caught.value.key, caught.value.expected, caught.value.actual) == ("doc", 1, 2)
    assert "'doc'" in str(caught.value)
    assert [d.value for d in await db.history("doc")] == ["v1", "v2"]


async def test_creating_a_document_that_exists_conflicts(db: SharedAgentDB) -> None:
    """expected_version=0 means "must not exist yet"."""
    await db.write("run/plan", {"a": 1}, "research-1", expected_version=0)

    with pytest.raises(ConflictError):
        await db.write("run/plan", {"a": 2}, "research-2", expected_version=0)


async def test_fifty_concurrent_increments_end_at_exactly_fifty(db: SharedAgentDB) -> None:
    """update() retries conflicts until every increment has landed, once."""

    async def increment(n: int) -> None:
        await db.update("counter", lambda v: (v or 0) + 1, f"agent-{n}")

    async with anyio.create_task_group() as tg:
        for n in range(50):
            tg.start_soon(increment, n)

    final = await db.read("counter")
    assert final is not None
    assert (final.value, final.version) == (50, 50)
    assert [d.value for d in await db.history("counter")] == list(range(1, 51))


async def issued_through(db: SharedAgentDB, token: int) -> None:
    """Let tokens 1 to ``token`` be issued (a write may carry only an issued token)."""
    while await db.issue_fencing_token("test-tokens") < token:
        pass


async def test_of_twenty_racing_writes_on_one_version_exactly_one_lands(
    db: SharedAgentDB,
) -> None:
    """Writers that all expect version 1 of an existing document: one wins, the rest conflict."""
    await issued_through(db, 20)
    await db.write("doc", "v1", "a", expected_version=0)
    outcomes: list[str] = []

    async def write(n: int) -> None:
        try:
            await db.write("doc", f"from {n}", f"agent-{n}", expected_version=1, fencing_token=n)
            outcomes.append("ok")
        except ConflictError as exc:
            outcomes.append(f"conflict at {exc.actual}")

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(write, n)

    assert sorted(outcomes) == ["conflict at 2"] * 19 + ["ok"]
    latest = await db.read("doc")
    assert latest is not None
    assert latest.version == 2
    assert len(await db.history("doc")) == 2


async def test_a_stale_token_on_an_existing_document_leaves_its_head_unchanged(
    db: SharedAgentDB,
) -> None:
    """A refused write changes neither the version nor the highest token seen."""
    await issued_through(db, 8)
    await db.write("doc", "v1", "a", fencing_token=7)
    with pytest.raises(StaleFencingTokenError):
        await db.write("doc", "late", "b", fencing_token=6)
    with pytest.raises(ConflictError):
        await db.write("doc", "stale", "b", expected_version=5, fencing_token=8)

    second = await db.write("doc", "v2", "c", expected_version=1, fencing_token=7)

    assert second.version == 2
    with pytest.raises(StaleFencingTokenError):
        await db.write("doc", "late", "b", fencing_token=6)


async def test_a_write_with_an_older_fencing_token_is_rejected(db: SharedAgentDB) -> None:
    """Once token 8 wrote, token 7 is refused and writes nothing; 8 and 9 still pass."""
    await issued_through(db, 9)
    await db.write("section/a", "by holder 7", "w-1", fencing_token=7)
    await db.write("section/a", "by holder 8", "w-2", fencing_token=8)

    with pytest.raises(StaleFencingTokenError) as caught:
        await db.write("section/a", "late write by 7", "w-1", fencing_token=7)

    assert (caught.value.token, caught.value.highest) == (7, 8)
    await db.write("section/a", "8 again", "w-2", fencing_token=8)
    await db.write("section/a", "by holder 9", "w-3", fencing_token=9)
    assert [d.value for d in await db.history("section/a")] == [
        "by holder 7",
        "by holder 8",
        "8 again",
        "by holder 9",
    ]


async def test_namespaces_see_only_their_own_documents(
    pg_pool: asyncpg.Pool, namespace: str, db: SharedAgentDB
) -> None:
    """The same key in two namespaces is two documents."""
    other = SharedAgentDB(pg_pool, f"{namespace}-other")
    await db.write("doc", "mine", "a")

    assert await other.read("doc") is None
    assert await other.keys() == []
    assert (await other.write("doc", "theirs", "a", expected_version=0)).version == 1
    assert await db.keys() == ["doc"]


async def test_read_many_returns_the_latest_version_of_each_key(db: SharedAgentDB) -> None:
    """One query returns every existing key's newest version and skips missing keys."""
    await db.write("a", 1, "x")
    await db.write("a", 2, "x")
    await db.write("b/c", 3, "x")

    docs = await db.read_many(["a", "b/c", "missing"])

    assert {k: (d.value, d.version) for k, d in docs.items()} == {"a": (2, 2), "b/c": (3, 1)}
    assert await db.keys("b/") == ["b/c"]


@pytest.mark.parametrize("bad", ["", "x" * 257, "nul\x00", "tab\t", "\ud800", 7])
async def test_bad_keys_are_rejected_clearly(db: SharedAgentDB, bad: str) -> None:
    """Empty, oversized, control-character and non-string keys are refused before any SQL."""
    with pytest.raises(InvalidIdError, match="document key"):
        await db.write(bad, 1, "a")


async def test_values_that_are_not_json_are_rejected(db: SharedAgentDB) -> None:
    """A value that JSON cannot hold raises a clear error and writes nothing."""
    with pytest.raises(InvalidValueError, match="not JSON"):
        await db.write("doc", {"when": datetime.now(UTC)}, "a")
    assert await db.read("doc") is None


async def test_str_and_int_subclasses_are_stored_as_their_json_values(db: SharedAgentDB) -> None:
    """A StrEnum, an IntEnum and a plain str subclass are written as the string or int."""

    class Color(StrEnum):
        RED = "red"

    class Size(IntEnum):
        BIG = 3

    class Label(str):
        pass

    written = await db.write("doc", {"c": Color.RED, "s": Size.BIG, "l": Label("x")}, "a")
    stored = await db.read("doc")

    assert stored is not None
    assert stored.value == written.value == {"c": "red", "s": 3, "l": "x"}
    assert type(stored.value["c"]) is str


async def test_a_token_never_issued_is_refused_and_real_holders_write_after_it(
    db: SharedAgentDB,
) -> None:
    """A forged token (far above any grant) writes nothing and raises no key's highest token,
    so the next real holder is not locked out."""
    first = await db.issue_fencing_token("doc")
    await db.write("doc", "a", "holder-1", 0, fencing_token=first)

    with pytest.raises(UnissuedFencingTokenError, match="never issued"):
        await db.write("doc", "forged", "evil", 1, fencing_token=2**62)

    second = await db.issue_fencing_token("doc")
    written = await db.write("doc", "b", "holder-2", 1, fencing_token=second)
    assert (written.version, [d.value for d in await db.history("doc")]) == (2, ["a", "b"])
