"""``folio run --recovery-dir``: the partitions appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from folio.errors import UsageProblem
from folio.wiring import recovery_config


def parts(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("part-*.sqlite3"))


def test_a_new_directory_gets_every_partition(tmp_path: Path) -> None:
    target = tmp_path / "recovery"
    assert recovery_config(target, 3) is not None
    assert parts(target) == ["part-0.sqlite3", "part-1.sqlite3", "part-2.sqlite3"]
    assert [p.name for p in tmp_path.iterdir()] == ["recovery"]  # no staging left
    before = {p: p.stat().st_mtime_ns for p in target.iterdir()}
    recovery_config(target, 5)  # initialised once: the count is fixed
    assert {p: p.stat().st_mtime_ns for p in target.iterdir()} == before


def test_an_interrupted_start_leaves_nothing_that_looks_initialised(tmp_path: Path) -> None:
    target = tmp_path / "recovery"
    staging = tmp_path / ".recovery.initializing"  # a start killed mid-way left this
    staging.mkdir()
    (staging / "part-0.sqlite3").write_bytes(b"half")
    assert not target.exists()  # so the next start initialises from scratch
    recovery_config(target, 2)
    assert parts(target) == ["part-0.sqlite3", "part-1.sqlite3"]
    assert (target / "part-0.sqlite3").read_bytes() != b"half"
    assert not staging.exists()


def test_an_empty_directory_is_used_and_a_foreign_one_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    recovery_config(empty, 1)
    assert parts(empty) == ["part-0.sqlite3"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UsageProblem, match="holds files but no partitions"):
        recovery_config(foreign, 1)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert not (tmp_path / ".foreign.initializing").exists()
