"""Inputs are files, folders (recursive) and globs; missing names are kept for the manifest."""

from __future__ import annotations

import json
import os
import resource
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mmflow.tasks import inputs
from mmflow.tasks.errors import Rejection
from mmflow.tasks.inputs import (
    carried_name,
    expand_inputs,
    hash_input,
    local_file,
    read_input,
    sha256_of,
)


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


# ---------------------------------------------------------------- hostile paths (issue 9, 15)


def _ends_within(call: Callable[[], object], seconds: float, fifo: Path | None = None) -> object:
    """`call()`'s result or exception, failing the test if it takes longer than `seconds`
    (a reader blocked on a FIFO is released by opening its write end, so the test ends)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # the outcome under test, whatever it is
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        if fifo is not None:
            with open(fifo, "wb"):
                pass
        pytest.fail(f"still running after {seconds} s")
    return outcome[0]


@pytest.mark.parametrize("reader", [read_input, hash_input])
def test_a_fifo_is_refused_at_once_as_not_a_file(tmp_path: Path, reader: Callable) -> None:
    fifo = tmp_path / "meeting.wav"
    os.mkfifo(fifo)
    outcome = _ends_within(lambda: reader(str(fifo)), 5, fifo)
    assert isinstance(outcome, Rejection) and outcome.code == "not_a_file", outcome
    assert "pipe" in outcome.message


@pytest.mark.parametrize("reader", [read_input, hash_input])
def test_a_link_to_dev_zero_is_refused_without_reading(tmp_path: Path, reader: Callable) -> None:
    (tmp_path / "in").mkdir()
    link = tmp_path / "in" / "zero.pdf"
    link.symlink_to("/dev/zero")
    outcome = _ends_within(lambda: reader(str(link)), 5)
    assert isinstance(outcome, Rejection), outcome
    assert outcome.code in ("not_a_file", "link_outside_folder")


def test_a_named_device_is_not_a_file() -> None:
    outcome = _ends_within(lambda: read_input("/dev/zero"), 5)
    assert isinstance(outcome, Rejection) and outcome.code == "not_a_file", outcome
    assert "device" in outcome.message


def test_a_sparse_file_over_the_limit_is_too_large_before_it_is_read(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.pdf"
    with sparse.open("wb") as handle:
        handle.truncate(3 * 1024**3)  # 3 GB on paper, nothing on disk
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = _ends_within(lambda: read_input(str(sparse), max_bytes=50 * 1024**2), 2)
    assert isinstance(outcome, Rejection) and outcome.code == "too_large", outcome
    outcome = _ends_within(lambda: hash_input(str(sparse), max_bytes=1024**3), 2)
    assert isinstance(outcome, Rejection) and outcome.code == "too_large", outcome
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 64, f"peak memory grew by {grown_mb:.0f} MB"


def test_hashing_streams_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello" * 500_000)
    assert hash_input(str(path)) == sha256_of(path.read_bytes())


def test_a_link_out_of_its_folder_is_refused_and_one_inside_is_followed(tmp_path: Path) -> None:
    (tmp_path / "secret.pdf").write_bytes(b"%PDF- outside")
    inbox = tmp_path / "in"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "sub" / "real.pdf").write_bytes(b"%PDF- inside")
    (inbox / "escape.pdf").symlink_to(tmp_path / "secret.pdf")
    (inbox / "dots.pdf").symlink_to("../secret.pdf")
    (inbox / "inside.pdf").symlink_to("sub/real.pdf")
    for name in ("escape.pdf", "dots.pdf"):
        with pytest.raises(Rejection) as caught:
            read_input(str(inbox / name))
        assert caught.value.code == "link_outside_folder"
        assert "secret" not in caught.value.message  # the target is not revealed
    assert read_input(str(inbox / "inside.pdf")) == b"%PDF- inside"


def test_link_loops_dangling_links_and_folders_are_typed_rejections(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").symlink_to("b.pdf")
    (tmp_path / "b.pdf").symlink_to("a.pdf")
    (tmp_path / "gone.pdf").symlink_to("nothing.pdf")
    (tmp_path / "folder.pdf").mkdir()
    expected = {"a.pdf": "not_a_file", "gone.pdf": "not_found", "folder.pdf": "not_a_file"}
    for name, code in expected.items():
        with pytest.raises(Rejection) as caught:
            hash_input(str(tmp_path / name))
        assert caught.value.code == code, name


def test_a_walk_lists_links_to_folders_without_following_them(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.pdf").write_bytes(b"x")
    (inbox / "root").symlink_to("/")
    (inbox / "up").symlink_to("..")
    found = _ends_within(lambda: expand_inputs([str(inbox)]), 10)
    assert sorted(Path(str(f)).name for f in found) == ["a.pdf", "root", "up"]  # type: ignore[attr-defined]


def test_a_name_that_is_not_utf8_is_carried_as_a_file_uri_that_reads_back(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9 \xff.pdf"
    with open(raw, "wb") as handle:
        handle.write(b"the bytes")
    (found,) = expand_inputs([str(tmp_path)])
    json.dumps(found).encode("utf-8")  # valid UTF-8, so it can travel as JSON
    assert found.startswith("file://") and found.endswith("/caf%E9%20%FF.pdf")
    assert local_file(found) == Path(os.fsdecode(raw))
    assert read_input(found) == b"the bytes"
    assert hash_input(found) == sha256_of(b"the bytes")
    assert carried_name(str(tmp_path / "plain é.pdf")) == str(tmp_path / "plain é.pdf")


def test_hashing_an_unchanged_file_again_reads_nothing_and_a_change_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.pdf"
    path.write_bytes(b"first")
    assert hash_input(str(path)) == sha256_of(b"first")
    reads: list[str] = []
    real_read = inputs._read_bounded

    def counted(handle: object, uri: str, max_bytes: int) -> object:
        reads.append(uri)
        return real_read(handle, uri, max_bytes)  # type: ignore[arg-type]

    monkeypatch.setattr(inputs, "_read_bounded", counted)
    assert hash_input(str(path)) == sha256_of(b"first")
    assert reads == []
    path.write_bytes(b"second!")  # another size (and time): the digest is read again
    assert hash_input(str(path)) == sha256_of(b"second!")
    assert reads == [str(path)]


def test_an_s3_object_is_judged_from_its_listing_before_it_is_read(moto_endpoint: str) -> None:
    """Issue 15: the object store's size and type decide first, as `stat` does locally: an
    object over the bound is `too_large` and a prefix is `not_a_file`, for every reader."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=moto_endpoint)
    fs.mkdir("mmflow-limits")
    fs.pipe_file("mmflow-limits/in/big.pdf", b"%PDF-1.7\n" + bytes(2 * inputs.MB))
    fs.pipe_file("mmflow-limits/in/folder/inner.pdf", b"%PDF-1.7\n")
    big = "s3://mmflow-limits/in/big.pdf"
    for read in (inputs.read_input, inputs.hash_input):
        with pytest.raises(Rejection) as refused:
            read(big, inputs.MB)
        assert refused.value.code == "too_large" and "2.0 MB" in refused.value.message
        with pytest.raises(Rejection) as prefix:
            read("s3://mmflow-limits/in/folder", inputs.MB)
        assert prefix.value.code == "not_a_file"
