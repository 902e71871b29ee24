"""Which local logs an adopter finds: a run id too long for a folder name is found too."""

from __future__ import annotations

from pathlib import Path

from agentmem.memory import WriteAheadLog
from agentmem.service.adoption import RUN_ID_FILE, orphan_candidates, run_log_path


def _log_at(path: Path) -> None:
    WriteAheadLog(path).close()  # created, then released as a dead owner's would be


def test_a_log_of_a_run_id_too_long_for_a_folder_name_is_found_with_its_id(
    tmp_path: Path,
) -> None:
    """The cut, hashed folder keeps the id it stands for; the adopter gets it back whole."""
    long_id = "run-" + "x" * 250
    path = run_log_path(tmp_path, long_id, "writer-pool-abc")
    _log_at(path)

    assert "~" in path.parent.name
    assert orphan_candidates(tmp_path, "someone-else") == [(long_id, path)]


def test_a_cut_folder_whose_id_file_names_another_run_is_left_alone(tmp_path: Path) -> None:
    """An id file that does not give its folder's name (copied, forged) is not trusted."""
    path = run_log_path(tmp_path, "run-" + "y" * 250, "writer-pool-abc")
    _log_at(path)
    (path.parent / RUN_ID_FILE).write_text("run-somebody-else", encoding="utf-8")

    assert orphan_candidates(tmp_path, "someone-else") == []


def test_the_callers_own_log_and_short_ids_are_found_as_before(tmp_path: Path) -> None:
    """A short id's folder is the id itself; the caller's own log is never a candidate."""
    mine = run_log_path(tmp_path, "run-1", "me")
    theirs = run_log_path(tmp_path, "run-1", "dead")
    _log_at(mine)
    _log_at(theirs)

    assert orphan_candidates(tmp_path, "me") == [("run-1", theirs)]
