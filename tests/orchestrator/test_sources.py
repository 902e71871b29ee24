"""Source folders are checked before anything starts, with errors that say what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmem.orchestrator.sources import MAX_FILE_BYTES, SourceError, load_sources


def test_markdown_and_text_files_load_in_name_order(tmp_path: Path) -> None:
    """.md and .txt files load, sorted; other files are ignored."""
    (tmp_path / "b.txt").write_text("Second source.")
    (tmp_path / "a.md").write_text("# First\nText.")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")

    assert [s.name for s in load_sources(tmp_path)] == ["a.md", "b.txt"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"  \n\t\n", "is empty"),
        (b"text\x00with a NUL", "binary"),
        (b"caf\xe9 latin-1", "not UTF-8"),
        (b"x" * (MAX_FILE_BYTES + 1), "the limit is"),
    ],
)
def test_a_bad_file_is_rejected_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """Empty, binary, non-UTF-8 and huge files give a clear error naming the file."""
    (tmp_path / "good.md").write_text("Fine.")
    (tmp_path / "bad.md").write_bytes(content)

    with pytest.raises(SourceError, match=message) as caught:
        load_sources(tmp_path)
    assert "bad.md" in str(caught.value)


def test_a_missing_folder_a_file_and_an_empty_folder_are_rejected(tmp_path: Path) -> None:
    """The folder itself must exist, be a folder, and hold at least one source."""
    with pytest.raises(SourceError, match="does not exist"):
        load_sources(tmp_path / "nope")
    (tmp_path / "file.md").write_text("x")
    with pytest.raises(SourceError, match="not a folder"):
        load_sources(tmp_path / "file.md")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"no \.md or \.txt"):
        load_sources(tmp_path / "empty")
