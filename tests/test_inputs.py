"""Inputs are files, folders (recursive) and globs; missing names are kept for the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmflow.tasks.errors import Rejection
from mmflow.tasks.inputs import expand_inputs, read_input, sha256_of


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "deep").mkdir()
    for name in ("a/one.pdf", "a/two.PNG", "a/deep/three.jpg", "a/notes.txt", "a/.hidden.pdf"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_folder_is_walked_recursively_and_no_file_is_skipped_for_its_name(tree: Path) -> None:
    found = expand_inputs([str(tree / "a")])
    assert [Path(f).name for f in found] == ["three.jpg", "notes.txt", "one.pdf", "two.PNG"]


def test_glob_matches_visible_files(tree: Path) -> None:
    found = expand_inputs([str(tree / "a" / "*.pdf"), str(tree / "a" / "notes.txt")])
    assert [Path(f).name for f in found] == ["one.pdf", "notes.txt"]


def test_repeats_are_dropped_and_missing_names_kept(tree: Path) -> None:
    one = str(tree / "a" / "one.pdf")
    found = expand_inputs([one, one, str(tree / "missing.pdf")])
    assert found == [one, str(tree / "missing.pdf")]


def test_reading_a_missing_file_is_a_not_found_rejection(tmp_path: Path) -> None:
    with pytest.raises(Rejection) as caught:
        read_input(str(tmp_path / "nope.pdf"))
    assert caught.value.code == "not_found"


def test_read_input_returns_the_bytes_and_their_hash(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    assert read_input(str(path)) == b"hello"
    assert sha256_of(b"hello").startswith("2cf24dba")
