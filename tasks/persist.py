"""Writing DESIGN.md's output contracts: `<stem>.json`, `manifest.jsonl`, Parquet tables."""

from __future__ import annotations

import json
import threading
from pathlib import PurePosixPath
from typing import Any

import fsspec
import pandas as pd
from pydantic import BaseModel

from blocks.storage import require_filesystem
from tasks.models import ManifestEntry


def join(out_dir: str, name: str) -> str:
    return f"{out_dir.rstrip('/')}/{name}"


def ensure_dir(out_dir: str) -> None:
    require_filesystem(out_dir)
    fs, path = fsspec.core.url_to_fs(out_dir)
    fs.makedirs(path, exist_ok=True)


def write_text(path: str, text: str) -> None:
    """Write through a temporary name and rename, so a reader never sees half a file."""
    fs, fs_path = fsspec.core.url_to_fs(path)
    if fs.protocol in ("file", "local") or "file" in fs.protocol:
        partial = fs_path + ".partial"
        with fs.open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
        fs.mv(partial, fs_path)
    else:  # object stores write whole objects atomically already
        with fs.open(fs_path, "w", encoding="utf-8") as handle:
            handle.write(text)


def write_model(path: str, model: BaseModel) -> None:
    write_text(path, model.model_dump_json(indent=2) + "\n")


class OutputNames:
    """`<stem>.json` per input; a second input with the same stem gets `<stem>-<sha8>`."""

    def __init__(self) -> None:
        self._taken: dict[str, str] = {}
        self._lock = threading.Lock()

    def stem_for(self, uri: str, sha256: str | None) -> str:
        stem = PurePosixPath(uri.replace("\\", "/")).stem or "input"
        with self._lock:
            owner = self._taken.setdefault(stem, uri)
            if owner == uri:
                return stem
            alternative = f"{stem}-{(sha256 or 'nohash')[:8]}"
            self._taken.setdefault(alternative, uri)
            return alternative


class Manifest:
    """`manifest.jsonl`: appended as each input ends, compacted to one line per input at the end.

    Appending keeps what finished if the process dies; compaction (latest line wins) keeps
    "every input exactly once" true across re-runs into the same folder.
    """

    FILENAME = "manifest.jsonl"

    def __init__(self, out_dir: str) -> None:
        self.path = join(out_dir, self.FILENAME)
        self._lock = threading.Lock()
        self._fs, self._fs_path = fsspec.core.url_to_fs(self.path)

    def read(self) -> list[ManifestEntry]:
        if not self._fs.exists(self._fs_path):
            return []
        entries = []
        with self._fs.open(self._fs_path, "r", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    try:
                        entries.append(ManifestEntry.model_validate_json(line))
                    except ValueError:
                        continue  # a line cut short by a crash: its input is simply redone
        return entries

    def append(self, entry: ManifestEntry) -> None:
        line = entry.model_dump_json() + "\n"
        with self._lock:
            if self._fs.protocol in ("file", "local") or "file" in self._fs.protocol:
                with self._fs.open(self._fs_path, "a", encoding="utf-8") as handle:
                    handle.write(line)
            else:  # object stores cannot append: rewrite
                existing = (
                    self._fs.cat_file(self._fs_path).decode()
                    if self._fs.exists(self._fs_path)
                    else ""
                )
                self._fs.pipe_file(self._fs_path, (existing + line).encode())

    def compact(self, order: list[str] | None = None) -> list[ManifestEntry]:
        """One line per input, the latest wins; inputs in `order` first, in that order."""
        latest: dict[str, ManifestEntry] = {}
        for entry in self.read():
            latest[entry.uri] = entry
        ordered = [latest.pop(uri) for uri in (order or []) if uri in latest]
        entries = ordered + list(latest.values())
        write_text(self.path, "".join(e.model_dump_json() + "\n" for e in entries))
        return entries


def write_parquet(path: str, frame: pd.DataFrame) -> None:
    with fsspec.open(path, "wb") as handle:
        frame.to_parquet(handle, index=False)


def json_safe(value: Any) -> Any:
    """What a Prefect table artifact can show: plain strings, numbers and None."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
