"""Ids people write become key parts and file names that are safe and distinct."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentmem.memory.errors import InvalidIdError
from agentmem.memory.keys import (
    MAX_ID_LENGTH,
    Keyspace,
    decode_part,
    encode_part,
    glob_escape,
    path_part,
    validate_id,
)

# Every valid id: 1-256 characters, no control characters (Cc) and no surrogates (Cs).
ids = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=MAX_ID_LENGTH)


@pytest.mark.parametrize(
    "natural", ["customer:42", "market/eu:2026", "report:section:1", "a b", "café", "run??1", "%"]
)
def test_ids_people_write_are_valid(natural: str) -> None:
    """Colons, slashes, spaces, glob characters and non-ASCII text are all allowed."""
    assert validate_id(natural) == natural


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "empty"),
        ("x" * 257, "257 characters"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("a\x7fb", "control"),
        ("a\x85b", "control"),
        ("a\ud800b", "surrogate"),
        (42, "must be a string"),
        (None, "must be a string"),
    ],
)
def test_invalid_ids_are_refused_with_the_reason(bad: object, reason: str) -> None:
    """Empty, oversized, control-character, non-UTF-8 and non-string ids raise InvalidIdError."""
    with pytest.raises(InvalidIdError, match=reason):
        validate_id(bad, "agent_id")


@given(ids)
def test_an_encoded_part_has_no_separator_brace_glob_or_space_and_decodes_back(value: str) -> None:
    """Encoding leaves nothing special in the key and is reversed by decode_part."""
    part = encode_part(value)
    assert not re.search(r"[:{}*?\[\]\\\s]", part)
    assert decode_part(part) == value


@given(ids, ids)
def test_different_ids_never_share_a_key_part_or_a_file_name(a: str, b: str) -> None:
    """Encoding is injective, for key parts and for file names."""
    if a != b:
        assert encode_part(a) != encode_part(b)
        assert path_part(a) != path_part(b)


def test_ids_differing_only_in_encoded_characters_stay_apart() -> None:
    """'a:b', 'a%3Ab' and 'a b' vs 'a%20b' are four different key parts."""
    parts = {encode_part(v) for v in ["a:b", "a%3Ab", "a b", "a%20b", "a%253Ab"]}
    assert len(parts) == 5


@given(ids)
def test_a_path_part_is_one_safe_file_name(value: str) -> None:
    """Never '.', '..', hidden, with '/' or NUL, and short enough for any file system."""
    name = path_part(value)
    assert "/" not in name
    assert "\x00" not in name
    assert not name.startswith(".")
    assert len(name.encode()) <= 200


@pytest.mark.parametrize("tricky", [".", "..", "../etc", "a/../../b", "/abs", "~", ".hidden"])
def test_path_traversal_ids_become_plain_names(tricky: str) -> None:
    """Ids that look like paths name one file inside their folder."""
    name = path_part(tricky)
    assert name not in {".", ".."}
    assert "/" not in name


def test_the_namespace_is_an_encoded_hash_tag() -> None:
    """A namespace with braces still yields exactly one hash tag, so one cluster slot."""
    key = Keyspace("{x}:y").lock("r")
    assert key == "agentmem:{%7Bx%7D%3Ay}:lock:r"


def test_glob_escape_makes_every_glob_character_literal() -> None:
    """'*', '?', '[', ']' and '\\' are escaped with a backslash."""
    assert glob_escape(r"a*b?c[d]e\f") == r"a\*b\?c\[d\]e\\f"


def test_a_namespace_pattern_matches_only_that_namespace() -> None:
    """The SCAN pattern is the escaped key prefix followed by one '*'."""
    assert Keyspace("run??1").pattern() == "agentmem:{run%3F%3F1}:*"
