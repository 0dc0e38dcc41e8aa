"""Writing DESIGN.md's output contracts: `<stem>.json`, `manifest.jsonl`, Parquet tables."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

import fsspec
import pandas as pd
from pydantic import BaseModel

from mmflow.tasks.filesystems import require_filesystem
from mmflow.tasks.models import ManifestEntry


def join(out_dir: str, name: str) -> str:
    return f"{out_dir.rstrip('/')}/{name}"


def ensure_dir(out_dir: str) -> None:
    require_filesystem(out_dir)
    fs, path = fsspec.core.url_to_fs(out_dir)
    fs.makedirs(path, exist_ok=True)


def write_text(path: str, text: str) -> bytes:
    """Write through a temporary name and rename, so a reader never sees half a file.

    Returns the bytes written, so callers can hash what they stored without reading it back.
    """
    data = text.encode("utf-8")
    fs, fs_path = fsspec.core.url_to_fs(path)
    if _is_local(fs):
        partial = fs_path + ".partial"
        fs.pipe_file(partial, data)
        fs.mv(partial, fs_path)
    else:  # object stores write whole objects atomically already
        fs.pipe_file(fs_path, data)
    return data


def write_model(path: str, model: BaseModel) -> bytes:
    return write_text(path, model.model_dump_json(indent=2) + "\n")


def _stem_of(uri: str) -> str:
    return PurePosixPath(uri.replace("\\", "/")).stem or "input"


class OutputNames:
    """`<stem>.json` per input; a second input with the same stem gets `<stem>-<sha8>`.

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
        line = entry.model_dump_json() + "\n"
        if _is_local(self._fs):
            with self._lock, self._fs.open(self._fs_path, "a", encoding="utf-8") as handle:
                handle.write(line)  # one write per line: whole lines even from several processes
        else:
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl"
            self._fs.pipe_file(f"{self._parts}/{name}", line.encode())

    def latest(self) -> dict[str, ManifestEntry]:
        """The last line per input: what a re-run into this folder already has."""
        return {entry.uri: entry for entry in self.read()}

    def compact(self, order: list[str] | None = None) -> list[ManifestEntry]:
        """One line per input, the latest wins; inputs in `order` first, in that order."""
        parts = self._part_paths()
        latest = self.latest()
        ordered = [latest.pop(uri) for uri in (order or []) if uri in latest]
        entries = ordered + list(latest.values())
        write_text(self.path, "".join(e.model_dump_json() + "\n" for e in entries))
        if parts:  # folded in above; a crash before this line only leaves lines read twice
            self._fs.rm(parts)
        return entries


def write_parquet(path: str, frame: pd.DataFrame) -> None:
    with fsspec.open(path, "wb") as handle:
        frame.to_parquet(handle, index=False)


def json_safe(value: Any) -> Any:
    """What a Prefect table artifact can show: plain strings, numbers and None."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
