"""Faults mid-run: kill -9, two processes on one OUT, a full disk, S3 errors, damaged results.

Each fault runs for real: `mmflow run batch` subprocesses killed with SIGKILL in their own
process group, a tmpfs mounted small enough to fill, a proxy in front of `moto_server` that
fails S3 requests. After each, the same command again must end every listed input exactly once
(docs/faults.md has the table of faults and what happens).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore

from mmflow.flows.steps import InlineSteps, PrefectSteps
from mmflow.tasks.caching import Stamped, Step, source_key
from mmflow.tasks.errors import OutputNotWritten
from mmflow.tasks.models import ErrorInfo, ManifestEntry, Status
from mmflow.tasks.persist import Manifest
from mmflow.tasks.samples import numbered_invoices

# ---------------------------------------------------------------- helpers


def _manifest_lines(out: Path) -> list[dict[str, Any]]:
    """Every line of OUT's manifest, each required to be a whole JSON object."""
    text = (out / "manifest.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _inbox(path: Path, documents: int) -> Path:
    """`documents` distinct invoices, a copy of the first under another name, two bad files."""
    path.mkdir(parents=True)
    for name, data in numbered_invoices(documents):
        (path / name).write_bytes(data)
    (path / "zz-copy.pdf").write_bytes((path / "invoice-10000.pdf").read_bytes())
    (path / "notes.txt").write_text("not an invoice", encoding="utf-8")
    (path / "empty.pdf").write_bytes(b"")
    return path


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path`: a disk that really fills up (ENOSPC).

    Mounting needs root (CI runs as root). A file-size limit (RLIMIT_FSIZE) would be the
    alternative without root, but it fails writes with EFBIG per file, not with a full disk.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(disk: Path) -> Path:
    """Fill `disk` to the last byte with one file; deleting it frees the space again."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


# ---------------------------------------------------------------- the step cache


def _double(value: str) -> str:
    return value * 2


def _count_calls(calls: list[str]) -> Step:
    def doubled(value: str) -> str:
        calls.append(value)
        return _double(value)

    return Step("doubled", doubled)


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda data: b"",  # killed between creating the file and writing it
    "cut in half": lambda data: data[: len(data) // 2],  # killed or disk full mid-write
    "garbage": lambda data: b"\x80\x04garbage",  # not a record at all
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cache_record_is_a_miss_in_a_group(tmp_path: Path, damage: str) -> None:
    """A record a kill -9 cut short is computed again and rewritten, never a failure (it raised
    `EOFError: Ran out of input` from the step cache before)."""
    storage = LocalFileSystem(basepath=str(tmp_path / "cache"))
    calls: list[str] = []
    step = _count_calls(calls)
    with InlineSteps(storage, "run-1") as steps:
        first = steps.run(step, [source_key("a" * 64)])
    record = Path(storage._resolve_path(first.key))
    record.write_bytes(DAMAGE[damage](record.read_bytes()))

    with InlineSteps(storage, "run-2") as steps:
        again = steps.run(step, [source_key("a" * 64)])
    assert again.value == first.value
    assert len(calls) == 2  # computed again
    reread = ResultStore(result_storage=storage).read(first.key).result
    assert isinstance(reread, Stamped) and reread.value == first.value  # rewritten whole


def test_cache_records_are_written_whole_or_not_at_all(tmp_path: Path) -> None:
    """A record that does not fit on the disk leaves nothing under its key (Prefect's own
    write leaves the record cut short, which the next run would read back)."""
    with small_disk(tmp_path / "disk", "64k") as disk:
        storage = LocalFileSystem(basepath=str(disk / "cache"))
        step = Step("doubled", _double)
        (disk / "cache").mkdir()
        _fill(disk)
        big = source_key("b" * 64).model_copy(update={"value": "x" * 20_000})
        with InlineSteps(storage, "run-1") as steps:
            steps.run(step, [big])  # the result stands; only its record could not be written
        assert not [p for p in (disk / "cache").iterdir()], "a partial record was left behind"


@pytest.mark.slow
def test_a_damaged_cache_record_is_a_miss_for_a_per_step_task(
    prefect_server: str, tmp_path: Path
) -> None:
    """Per-step Prefect tasks (single documents) treat a damaged record as not cached: Prefect
    3.9's `ResultStore.exists` reads the record and answers False when it does not load."""
    storage = LocalFileSystem(basepath=str(tmp_path / "cache"))
    calls: list[str] = []
    step = _count_calls(calls)

    @flow
    def one_step(run_id: str) -> Stamped[Any]:
        return PrefectSteps(storage, run_id).run(step, [source_key("c" * 64)])

    first = one_step("run-1")
    record = Path(storage._resolve_path(first.key))
    record.write_bytes(DAMAGE["empty"](record.read_bytes()))
    again = one_step("run-2")
    assert (again.value, len(calls)) == (first.value, 2)
    assert ResultStore(result_storage=storage).read(first.key).result.value == first.value


# ---------------------------------------------------------------- the manifest


def _entry(uri: str, message: str = "x") -> ManifestEntry:
    return ManifestEntry(
        uri=uri, sha256="1" * 64, status=Status.FAILED, error=ErrorInfo(code="c", message=message)
    )


def test_a_line_after_a_fragment_starts_on_a_line_of_its_own(tmp_path: Path) -> None:
    """A fragment left at the end (by a full disk) must not swallow the next line."""
    manifest = Manifest(str(tmp_path))
    manifest.append(_entry("a.pdf"))
    with open(tmp_path / "manifest.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"uri": "cut.pdf", "sha2')
    manifest.append(_entry("b.pdf"))
    assert [e.uri for e in manifest.read()] == ["a.pdf", "b.pdf"]


def test_a_full_disk_leaves_no_part_of_a_line_in_the_manifest(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "64k") as disk:
        manifest = Manifest(str(disk))
        manifest.append(_entry("a.pdf"))
        before = (disk / "manifest.jsonl").read_bytes()
        filler = _fill(disk)
        with pytest.raises(OutputNotWritten, match="no space left on device") as raised:
            manifest.append(_entry("b.pdf", "long " * 2000))  # crosses into a page not there
        assert "manifest.jsonl" in str(raised.value) and str(disk) in str(raised.value)
        assert (disk / "manifest.jsonl").read_bytes() == before  # every line whole
        filler.unlink()
        manifest.append(_entry("c.pdf"))
        assert [line["uri"] for line in _manifest_lines(disk)] == ["a.pdf", "c.pdf"]
