"""Faults mid-run: kill -9, two processes on one OUT, a full disk, S3 errors, damaged results.

Each fault runs for real: `mmflow run batch` subprocesses killed with SIGKILL in their own
process group, a tmpfs mounted small enough to fill, a proxy in front of `moto_server` that
fails S3 requests. After each, the same command again must end every listed input exactly once
(docs/faults.md has the table of faults and what happens).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prefect import flow
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore

from mmflow.flows.batch import plan_batch
from mmflow.flows.steps import InlineSteps, PrefectSteps
from mmflow.tasks.caching import Stamped, Step, source_key
from mmflow.tasks.errors import OutputNotWritten
from mmflow.tasks.models import ErrorInfo, ManifestEntry, Status
from mmflow.tasks.persist import Manifest
from mmflow.tasks.samples import numbered_invoices
from tests.inboxes import batch_inbox

# ---------------------------------------------------------------- helpers


def _manifest_lines(out: Path) -> list[dict[str, Any]]:
    """Every line of OUT's manifest, each required to be a whole JSON object."""
    text = (out / "manifest.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


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


# ---------------------------------------------------------------- results cut short


def _ok(uri: str, sizes: dict[str, int] | None) -> ManifestEntry:
    output = f"/out/{uri}.json"
    return ManifestEntry(
        uri=uri, sha256=uri * 64, status=Status.OK, output=output, output_bytes=sizes
    )


def test_a_result_missing_empty_or_cut_short_is_planned_again() -> None:
    """Judged from one listing of OUT: a result whose size is not the size its line recorded
    was cut short (a kill -9 during a copy, a full disk) and is computed again."""
    before = {
        "a": _ok("a", {"/out/a.json": 500}),  # intact
        "b": _ok("b", {"/out/b.json": 500}),  # gone
        "c": _ok("c", {"/out/c.json": 500}),  # empty
        "d": _ok("d", {"/out/d.json": 500}),  # cut short
        "e": _ok("e", None),  # a line from before sizes were recorded, its file intact
    }
    listing = {"/out/a.json": 500, "/out/c.json": 0, "/out/d.json": 120, "/out/e.json": 500}
    plan = plan_batch(list(before), {uri: uri * 64 for uri in before}, before, listing)
    assert sorted(plan.todo) == ["b", "c", "d"]
    assert [e.uri for e in plan.resumed] == ["a", "e"]
    assert "120 bytes, not the 500 written" in plan.redo["d"]


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


# ---------------------------------------------------------------- whole batches, for real


def _batch_command(source: Path | str, out: Path | str, cache: Path | str) -> list[str]:
    return [
        *(sys.executable, "-m", "mmflow.cli", "run", "batch", str(source)),
        *("--out", str(out), "--group-size", "2", "--cache-dir", str(cache)),
    ]


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A batch in a process group of its own, so a kill -9 takes its workers with it."""
    with open(log, "wb") as handle:
        return subprocess.Popen(
            command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def _ended(out: Path) -> set[str]:
    """Inputs the manifest ends so far (every line must parse, even mid-run)."""
    if not (out / "manifest.jsonl").exists():
        return set()
    return {line["uri"] for line in _manifest_lines(out) if line["status"] != "failed"}


def _kill_when(
    batch: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, log: Path
) -> None:
    deadline = time.monotonic() + 240
    while not ready():
        assert batch.poll() is None, f"the batch ended before {what}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {what} in 4 minutes:\n{log.read_text()}"
        time.sleep(0.01)
    os.killpg(batch.pid, signal.SIGKILL)
    assert batch.wait(timeout=30) == -signal.SIGKILL


@contextmanager
def compaction_held_off(out: Path) -> Iterator[None]:
    """Hold `.mmflow.lock` shared, as an appending run does: lines still land in the manifest,
    but its compaction (and the line-items table after it) waits until this lets go."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".mmflow.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _check_exactly_once(out: Path, inputs: Path) -> list[dict[str, Any]]:
    """Every listed input in the manifest exactly once in its final state; each result parses
    and is the one its line names; the line-items table holds the rows of every `ok` input."""
    import pyarrow.parquet as pq

    lines = _manifest_lines(out)
    uris = [line["uri"] for line in lines]
    listed = sorted(str(p) for p in inputs.iterdir())
    assert sorted(uris) == listed, "an input missing from the manifest, or on two lines"
    by_status = {s: sorted(u["uri"] for u in lines if u["status"] == s) for s in ("ok", "failed")}
    assert not by_status["failed"], lines
    rows: dict[str, int] = {}
    for line in lines:
        if line["status"] != "ok":
            continue
        result = json.loads(Path(line["output"]).read_text(encoding="utf-8"))
        assert result["source"]["sha256"] == line["sha256"]
        assert line["output_bytes"] == {line["output"]: Path(line["output"]).stat().st_size}
        rows[line["uri"]] = len(result["line_items"])
    table = pq.read_table(out / "line_items.parquet").to_pydict()
    in_table = {uri: table["uri"].count(uri) for uri in set(table["uri"])}
    assert in_table == {uri: n for uri, n in rows.items() if n}
    for stray in out.glob("*.json"):  # a leftover from a killed run must not be half a file
        json.loads(stray.read_text(encoding="utf-8"))
    return lines


@pytest.mark.slow
def test_a_batch_killed_at_three_points_ends_every_input_exactly_once(
    prefect_server: str, tmp_path: Path
) -> None:
    """kill -9 the same batch three times (inputs in flight; half of them ended; every input
    ended and compaction waiting), at thresholds drawn from a seeded random, then run it to
    the end: the manifest ends each input once, results and the line-items table agree."""
    seed = int(os.environ.get("MMFLOW_FAULT_SEED", "0")) or random.randrange(1, 10_000)
    draw = random.Random(seed)
    inbox = batch_inbox(tmp_path / "inbox", 12)  # 12 invoices, a copy, two bad files: 15 inputs
    out, cache = tmp_path / "out", tmp_path / "cache"
    command = _batch_command(inbox, out, cache)
    env = os.environ | {"PREFECT_API_URL": prefect_server}
    log = tmp_path / "batch.log"
    note = f"(MMFLOW_FAULT_SEED={seed} repeats this run)"

    first_kill = draw.randint(1, 4)
    _kill_when(_start(command, env, log), lambda: len(_ended(out)) >= first_kill, "1st", log)
    after_first = _ended(out)
    assert len(after_first) < 15, f"the first kill did not land mid-batch {note}"

    second_kill = len(after_first) + draw.randint(3, 6)
    _kill_when(_start(command, env, log), lambda: len(_ended(out)) >= second_kill, "2nd", log)
    assert after_first < _ended(out), note

    with compaction_held_off(out):
        third = _start(command, env, log)
        _kill_when(third, lambda: len(_ended(out)) == 15, "every input ended", log)
    listing_order = sorted(str(p) for p in inbox.iterdir())
    uncompacted = [line["uri"] for line in _manifest_lines(out)]
    assert uncompacted != listing_order, f"compaction ran before the third kill {note}"
    assert not (out / "line_items.parquet").exists(), note

    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout + final.stderr
    lines = _check_exactly_once(out, inbox)
    assert sum(line["status"] == "ok" for line in lines) == 12, note
    assert "processed now           │ 0" in final.stdout  # the third run had ended them all


@pytest.mark.slow
def test_two_batches_started_at_once_on_one_out(prefect_server: str, tmp_path: Path) -> None:
    """The same command twice at the same moment: one holds `.mmflow-batch.lock`, the other is
    refused with a message naming the lock (or, had the first ended already, resumes it all);
    the manifest is never two runs' lines interleaved."""
    inbox = batch_inbox(tmp_path / "inbox", 6)
    out = tmp_path / "out"
    command = _batch_command(inbox, out, tmp_path / "cache")
    env = os.environ | {"PREFECT_API_URL": prefect_server}
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    batches = [_start(command, env, log) for log in logs]
    codes = [batch.wait(timeout=300) for batch in batches]
    texts = [log.read_text(encoding="utf-8") for log in logs]
    assert sorted(codes) in ([0, 0], [0, 1]), texts
    if 1 in codes:
        refused = texts[codes.index(1)]
        assert "is locked by another mmflow run" in refused, refused
        assert ".mmflow-batch.lock" in refused, refused
    else:  # one ended before the other listed OUT: the second had nothing left to do
        assert any("processed now           │ 0" in text for text in texts), texts
    lines = _check_exactly_once(out, inbox)
    assert sum(line["status"] == "ok" for line in lines) == 6

    # A result cut short since (a copy that stopped, a full disk elsewhere) is redone.
    cut = Path(next(line["output"] for line in lines if line["status"] == "ok"))
    cut.write_bytes(cut.read_bytes()[:100])
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "redone (result missing) │ 1" in again.stdout, again.stdout
    _check_exactly_once(out, inbox)


@pytest.mark.slow
def test_a_full_disk_on_out_ends_with_a_clear_error_and_a_rerun_completes(
    prefect_server: str, tmp_path: Path
) -> None:
    """OUT on a disk with room for a few results: the results that do not fit end `failed`
    with `output_not_written`, the run stops with an error naming the disk, every file left is
    whole; once space is freed, the same command finishes the batch."""
    inbox = batch_inbox(tmp_path / "inbox", 8)
    command = _batch_command(inbox, tmp_path / "disk" / "out", tmp_path / "cache")
    env = os.environ | {"PREFECT_API_URL": prefect_server}
    with small_disk(tmp_path / "disk", "1m") as disk:
        out = disk / "out"
        out.mkdir()
        filler = _fill(disk)
        os.truncate(filler, filler.stat().st_size - 80 * 1024)  # room for four or five results
        full = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        said = full.stdout + full.stderr
        assert full.returncode == 1, said
        assert "no space left on device" in said and str(out) in said, said
        assert "run the same command again" in said, said
        lines = _manifest_lines(out)  # each line whole
        written = [line for line in lines if line["status"] == "ok"]
        unwritten = [line for line in lines if line["status"] == "failed"]
        assert 1 <= len(written) < 8, said
        assert unwritten and {line["error"]["code"] for line in unwritten} == {
            "output_not_written"
        }, lines
        assert all("no space left on device" in line["error"]["message"] for line in unwritten)
        for result in out.glob("*.json"):  # the results there are whole
            json.loads(result.read_text(encoding="utf-8"))
        assert not list(out.glob("*.partial-*")), "a partial file was left behind"

        filler.unlink()
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        lines = _check_exactly_once(out, inbox)
        assert sum(line["status"] == "ok" for line in lines) == 8


@pytest.mark.slow
def test_s3_errors_mid_run_end_inputs_failed_and_a_rerun_completes(
    prefect_server: str, moto_endpoint: str, tmp_path: Path
) -> None:
    """A batch from and into S3 through a proxy that fails requests: 503 SlowDown, 500, resets
    before and after the store acts, at random, and every PUT of one result. Retries absorb
    the passing faults; the lasting one ends its input `failed` with `output_not_written`; no
    line is lost or doubled, and the same command with the faults gone completes the batch."""
    import s3fs

    from tests.s3faults import Fault, faulty_s3

    store = s3fs.S3FileSystem(endpoint_url=moto_endpoint)
    store.mkdir("faults-s3")
    documents = dict(numbered_invoices(6))
    for name, data in documents.items():
        store.pipe_file(f"faults-s3/inbox/{name}", data)
    store.pipe_file("faults-s3/inbox/zz-copy.pdf", documents["invoice-10000.pdf"])
    listed = sorted(f"s3://faults-s3/inbox/{name}" for name in [*documents, "zz-copy.pdf"])
    command = _batch_command("s3://faults-s3/inbox/", "s3://faults-s3/out", tmp_path / "cache")

    def manifest() -> list[dict[str, Any]]:
        store.invalidate_cache()
        text = store.cat_file("faults-s3/out/manifest.jsonl").decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    with faulty_s3(moto_endpoint, seed=7) as (endpoint, proxy):
        env = os.environ | {"PREFECT_API_URL": prefect_server, "AWS_ENDPOINT_URL": endpoint}
        proxy.add(Fault(("internal",), methods=("PUT",), path_contains="out/invoice-10003.json"))
        proxy.add(Fault(("slowdown", "internal", "drop", "drop_after"), probability=0.15))
        faulty = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        said = faulty.stdout + faulty.stderr
        assert faulty.returncode == 1, said
        assert sum(proxy.injected.values()) > 10 and len(proxy.injected) == 4, proxy.injected
        lines = manifest()
        assert sorted(line["uri"] for line in lines) == listed, said  # each once, compacted
        failed = {line["uri"]: line["error"] for line in lines if line["status"] == "failed"}
        assert "s3://faults-s3/inbox/invoice-10003.pdf" in failed, lines
        for error in failed.values():
            assert error["code"] == "output_not_written", failed
            assert "run the same command again" in error["message"], failed

        proxy.clear()
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
    lines = manifest()
    assert sorted(line["uri"] for line in lines) == listed
    assert {line["status"] for line in lines} == {"ok", "rejected"}
    for line in lines:
        if line["status"] == "ok":
            result = json.loads(store.cat_file(line["output"]))
            assert result["source"]["sha256"] == line["sha256"]
    assert f"processed now           │ {len(failed)}" in again.stdout, again.stdout
