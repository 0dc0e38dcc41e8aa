"""Writing the output contracts (docs/contracts.md): `<stem>.json`, `manifest.jsonl`, tables."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from pydantic import BaseModel

from mmflow.tasks.errors import InvalidOutputLocation, OutputBusy, OutputNotWritten
from mmflow.tasks.filesystems import require_filesystem
from mmflow.tasks.models import ManifestEntry
from mmflow.tasks.redaction import redact


def join(out_dir: str, name: str) -> str:
    return f"{out_dir.rstrip('/')}/{name}"


def ensure_dir(out_dir: str) -> None:
    require_filesystem(out_dir)
    fs, path = fsspec.core.url_to_fs(out_dir)
    fs.makedirs(path, exist_ok=True)


def check_output_location(out_dir: str) -> None:
    """Make sure `out_dir` can hold a run's outputs, creating it, or say what is wrong.

    A relative path is refused: a flow run started from the UI or a schedule runs in a worker's
    working directory, where nobody would look for its outputs (the CLI resolves relative paths
    against the shell's folder before it starts a run).
    """
    if "://" not in out_dir and not Path(out_dir).is_absolute():
        raise InvalidOutputLocation(
            f"out {out_dir!r} is a relative path; give an absolute folder or a storage URI "
            "such as s3://bucket/results (a run may execute in another working directory)"
        )
    require_filesystem(out_dir)
    fs, path = fsspec.core.url_to_fs(out_dir)
    if fs.isfile(path):
        raise InvalidOutputLocation(
            f"out {out_dir!r} is an existing file; name a folder (it is created if missing) "
            "or a storage prefix"
        )
    try:
        fs.makedirs(path, exist_ok=True)
    except OSError as error:
        raise InvalidOutputLocation(f"out {out_dir!r} cannot be created: {error}") from error


def write_bytes(path: str, data: bytes) -> bytes:
    """Write through a temporary name and rename, so a reader never sees half a file.

    Returns the bytes written, so callers can hash what they stored without reading it back.
    A write that fails (a full disk, a storage error) leaves nothing under `path` but what was
    there before, and raises `OutputNotWritten` naming the file, its folder and the cause.
    """
    fs, fs_path = fsspec.core.url_to_fs(path)
    try:
        if _is_local(fs):
            partial = f"{fs_path}.partial-{uuid.uuid4().hex[:8]}"  # unique: runs may overlap
            try:
                fs.pipe_file(partial, data)
                fs.mv(partial, fs_path)
            except BaseException:
                with suppress(FileNotFoundError):
                    fs.rm_file(partial)
                raise
        else:  # object stores write whole objects atomically already
            fs.pipe_file(fs_path, data)
    except OSError as error:
        raise not_written(path, error) from error
    return data


_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this process or file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
}


def lasting(error: OSError) -> bool:
    """An I/O error a moment's wait does not cure (a full disk, a read-only folder): retrying
    it only delays the report."""
    return error.errno in _CAUSES


def not_written(path: str, error: OSError) -> OutputNotWritten:
    """The error to raise when `path` in an output folder could not be written."""
    if isinstance(error, OutputNotWritten):
        return error
    folder = path.rstrip("/").rsplit("/", 1)[0]
    cause = _CAUSES.get(error.errno or 0) or f"{type(error).__name__}: {error}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        advice = "free space there, then run the same command again"
    elif lasting(error):
        advice = "make the folder writable, then run the same command again"
    else:  # a storage error that may pass
        advice = "run the same command again"
    return OutputNotWritten(f"could not write {path} (in {folder}): {cause}; {advice}", error.errno)


def write_text(path: str, text: str) -> bytes:
    """Every text output (result JSON, RTTM, SRT, the manifest) is redacted as it is written."""
    return write_bytes(path, redact(text).encode("utf-8"))


def write_model(path: str, model: BaseModel) -> bytes:
    return write_text(path, model.model_dump_json(indent=2) + "\n")


# A file name holds at most 255 bytes (ext4, XFS, APFS); outputs add a suffix such as
# `-<sha8>.json.partial` to the stem, so a stem keeps well under that.
MAX_STEM_BYTES = 120
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _stem_of(uri: str) -> str:
    return bounded_stem(PurePosixPath(uri.replace("\\", "/")).stem or "input")


def bounded_stem(stem: str) -> str:
    """A stem every file system and tool takes: control characters (a newline in a name) become
    `_`, and a stem longer than MAX_STEM_BYTES is cut at a character boundary and ends in
    `-<8 hex of the sha256 of the whole stem>`, so two long names still get two outputs."""
    clean = _CONTROL.sub("_", stem)
    raw = clean.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_STEM_BYTES:
        return clean
    suffix = "-" + hashlib.sha256(raw).hexdigest()[:8]
    head = raw[: MAX_STEM_BYTES - len(suffix)].decode("utf-8", "ignore")
    return head + suffix


class OutputNames:
    """`<stem>.json` per input; a second input with the same stem gets `<stem>-<sha8>`.

    A stem is bounded first (`bounded_stem`): a 250-byte input name must not make its output's
    name too long to create.

    `remember` seeds the names an earlier run into the same folder gave, so a resumed batch
    never hands an existing `<stem>.json` to a different input.
    """

    def __init__(self) -> None:
        self._taken: dict[str, str] = {}
        self._lock = threading.Lock()

    def remember(self, uri: str, output: str) -> None:
        """`output` (a result file an earlier run wrote for `uri`) keeps belonging to `uri`."""
        with self._lock:
            self._taken.setdefault(PurePosixPath(output.replace("\\", "/")).stem, uri)

    def reserve(self, uris: Iterable[str]) -> None:
        """The first of `uris` with a stem owns it, settled before copies of these names go to
        worker processes (Dask, Ray), where each copy would otherwise hand it out again."""
        with self._lock:
            for uri in uris:
                self._taken.setdefault(_stem_of(uri), uri)

    def stem_for(self, uri: str, sha256: str | None) -> str:
        stem = _stem_of(uri)
        with self._lock:
            owner = self._taken.setdefault(stem, uri)
            if owner == uri:
                return stem
            alternative = f"{stem}-{(sha256 or 'nohash')[:8]}"
            self._taken.setdefault(alternative, uri)
            return alternative

    def __getstate__(self) -> dict[str, Any]:  # a lock does not pickle (Dask, Ray workers)
        return {"_taken": dict(self._taken)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._taken = state["_taken"]
        self._lock = threading.Lock()


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "file" in protocols or "local" in protocols


class OutputLock:
    """An exclusive lock on an output folder, held while one run rewrites what several runs
    share there (the compacted manifest, run-level tables). Runs into one folder may overlap
    (webhook uploads, a batch beside them); without it, a line appended while another run
    compacts would be lost.

    Local folders use `flock` on `.mmflow.lock`: released by the kernel if the process dies.
    Object stores have no locks, so the lock is an object created only if absent (S3's
    conditional PUT, If-None-Match), holding its owner and an expiry; a lock left by a killed
    process is taken over once expired.
    """

    NAME = ".mmflow.lock"
    TTL_S = 120.0  # an object-store lock not refreshed for this long was left by a dead process

    def __init__(self, out_dir: str, timeout_s: float = 300.0, name: str = NAME) -> None:
        self.out_dir = out_dir
        self.timeout_s = timeout_s
        self.name = name
        self._fs, self._path = fsspec.core.url_to_fs(join(out_dir, name))
        self._local = _is_local(self._fs)
        self._handle: Any = None
        self._token = uuid.uuid4().hex  # tells this lock's object from another holder's
        self._refresher: threading.Thread | None = None
        self._released = threading.Event()

    def __enter__(self) -> OutputLock:
        deadline = time.monotonic() + self.timeout_s
        pause = 0.05
        while not self._try_acquire():
            if time.monotonic() > deadline:
                raise OutputBusy(
                    f"{self.out_dir} is locked by another mmflow run ({self.holder()}); wait for "
                    f"it to end, or remove {self.name} there if no run is writing to it"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        if not self._local:  # refreshed while held, so a long holder is never taken as dead
            self._released.clear()
            self._refresher = threading.Thread(target=self._refresh, daemon=True)
            self._refresher.start()
        return self

    def holder(self) -> str:
        """Who holds the lock, as far as can be told (object stores record it)."""
        if self._local:
            return "a process on this machine"
        try:
            return str(json.loads(self._fs.cat_file(self._path)).get("owner", "unknown"))
        except (FileNotFoundError, ValueError):
            return "unknown"

    def _stamp(self) -> bytes:
        owner = f"{os.uname().nodename}:{os.getpid()}"
        return json.dumps({"owner": owner, "at": time.time(), "token": self._token}).encode()

    def _refresh(self) -> None:
        while not self._released.wait(self.TTL_S / 4):
            with suppress(OSError):
                self._fs.pipe_file(self._path, self._stamp())

    def _try_acquire(self) -> bool:
        if self._local:
            import fcntl

            if self._handle is None:
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
                self._handle = open(self._path, "a+b")  # noqa: SIM115 (held until __exit__)
            try:
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True
        try:
            with self._fs.open(self._path, "xb") as handle:
                handle.write(self._stamp())
            return True
        except FileExistsError:
            if self._is_ours():  # our PUT was done, its answer lost, and the retry refused
                return True
            self._remove_if_stale()
            return False

    def _is_ours(self) -> bool:
        try:
            return bool(json.loads(self._fs.cat_file(self._path)).get("token") == self._token)
        except (FileNotFoundError, ValueError):
            return False

    def _remove_if_stale(self) -> None:
        try:
            held = json.loads(self._fs.cat_file(self._path))
        except (FileNotFoundError, ValueError):
            return
        if time.time() - float(held.get("at", 0)) > self.TTL_S:
            with suppress(FileNotFoundError):
                self._fs.rm_file(self._path)

    def __exit__(self, *exc_info: object) -> None:
        if self._local:
            import fcntl

            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        else:
            self._released.set()
            with suppress(FileNotFoundError):
                self._fs.rm_file(self._path)


class Manifest:
    """`manifest.jsonl`: appended as each input ends, compacted to one line per input at the end.

    Appending keeps what finished if the process dies; compaction (latest line wins) keeps
    "every input exactly once" true across re-runs into the same folder. Object stores cannot
    append, and rewriting the whole object per input would make a batch quadratic, so there each
    line goes to its own small object under `.manifest.d/` (named by time, so the order holds)
    until compaction folds them into `manifest.jsonl`. Readers see both.
    """

    FILENAME = "manifest.jsonl"
    PARTS = ".manifest.d"

    def __init__(self, out_dir: str) -> None:
        self.path = join(out_dir, self.FILENAME)
        self._lock = threading.Lock()
        self._fs, self._fs_path = fsspec.core.url_to_fs(self.path)
        self._parts = join(self._fs_path.rsplit("/", 1)[0], self.PARTS)

    def __getstate__(self) -> dict[str, Any]:  # a lock does not pickle (Dask, Ray workers)
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _part_paths(self) -> list[str]:
        if _is_local(self._fs) or not self._fs.exists(self._parts):
            return []
        return sorted(self._fs.find(self._parts))

    def read(self) -> list[ManifestEntry]:
        texts: list[str] = []
        if self._fs.exists(self._fs_path):
            texts.append(self._fs.cat_file(self._fs_path).decode("utf-8", errors="replace"))
        parts = self._part_paths()
        if parts:
            texts += [b.decode("utf-8", errors="replace") for b in self._fs.cat(parts).values()]
        entries = []
        for line in "\n".join(texts).splitlines():
            if line.strip():
                try:
                    entries.append(ManifestEntry.model_validate_json(line))
                except ValueError:
                    continue  # a line cut short by a crash: its input is simply redone
        return entries

    def append(self, entry: ManifestEntry) -> None:
        """Add one whole line, or raise `OutputNotWritten` and leave the manifest as it was.

        Locally the line is one `write` on a file opened for appending, so lines from several
        processes never interleave and a kill -9 never cuts one. A full disk can still accept
        part of a line: that part is cut off again (under the folder's lock, if no line came
        after it), and a line that follows any leftover fragment starts on a line of its own.
        """
        line = redact(entry.model_dump_json()) + "\n"
        if not _is_local(self._fs):
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl"
            try:
                self._fs.pipe_file(f"{self._parts}/{name}", line.encode())
            except OSError as error:
                raise not_written(self.path, error) from error
            return
        with self._lock:
            with _shared_lock(self._fs_path):
                fragment = _append_line(self._fs_path, line.encode())
            if fragment is None:
                return
            with suppress(OSError, OutputBusy), OutputLock(self._fs_path.rsplit("/", 1)[0], 5):
                if os.path.getsize(self._fs_path) == fragment[1]:  # nothing appended after it
                    os.truncate(self._fs_path, fragment[0])
            raise not_written(self.path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    def latest(self) -> dict[str, ManifestEntry]:
        """The last line per input: what a re-run into this folder already has."""
        return {entry.uri: entry for entry in self.read()}

    def compact(self, order: list[str] | None = None) -> list[ManifestEntry]:
        """One line per input, the latest wins; inputs in `order` first, in that order.

        Under the folder's `OutputLock`: a run that appends while another compacts keeps its
        lines (appends to a local manifest wait for the compaction; on object stores only the
        parts read here are removed)."""
        with OutputLock(self.path.rsplit("/", 1)[0]):
            parts = self._part_paths()
            latest = self.latest()
            ordered = [latest.pop(uri) for uri in (order or []) if uri in latest]
            entries = ordered + list(latest.values())
            write_text(self.path, "".join(e.model_dump_json() + "\n" for e in entries))
            if parts:  # folded in above; a crash before this line only leaves lines read twice
                self._fs.rm(parts)
        return entries


def _append_line(path: str, line: bytes) -> tuple[int, int] | None:
    """Append `line` in one write; returns where a part of it landed when only a part fit (the
    disk filled up), so the caller can cut it off; raises `OutputNotWritten` when none did."""
    try:
        with open(path, "a+b", buffering=0) as handle:  # O_APPEND: each write lands at the end
            size = os.fstat(handle.fileno()).st_size
            if size and os.pread(handle.fileno(), 1, size - 1) != b"\n":
                line = b"\n" + line  # after a fragment left by a full disk: a line of its own
            written = handle.write(line) or 0
            end = handle.tell()
    except OSError as error:
        raise not_written(path, error) from error
    return None if written == len(line) else (end - written, end)


@contextmanager
def _shared_lock(manifest_path: str) -> Iterator[None]:
    """Appends share the folder lock: many at once, never during a compaction (OutputLock)."""
    import fcntl

    path = Path(manifest_path).parent / OutputLock.NAME
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def json_safe(value: Any) -> Any:
    """What a Prefect table artifact can show: plain strings, numbers and None."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
