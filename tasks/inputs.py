"""Where inputs come from: files, folders, globs and fsspec URIs (s3://…), read as bytes."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from threading import Lock

import fsspec

from mmflow.tasks.errors import Rejection, RejectionCode
from mmflow.tasks.filesystems import require_filesystem


def _is_remote(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def expand_inputs(locations: list[str]) -> list[str]:
    """Every file named, found below a folder or matched by a glob, sorted and without repeats.

    A folder is walked recursively. No file is skipped for its name (only hidden dot-files):
    what a file is, validate decides from its bytes, and a file that is not a document ends in
    the manifest as a rejection rather than vanishing. Names that match nothing are kept too,
    so they end in the manifest as `not_found`.
    """
    found: dict[str, None] = {}

    def keep(name: str) -> None:
        found.setdefault(name, None)

    for location in locations:
        require_filesystem(location)  # a clear "pip install …" instead of an ImportError
        fs, path = fsspec.core.url_to_fs(location)
        protocol = location.split("://", 1)[0] + "://" if _is_remote(location) else ""
        if fs.isdir(path):
            for name in sorted(fs.find(path)):
                if not Path(name).name.startswith("."):
                    keep(protocol + name if protocol else str(Path(name)))
        elif any(ch in path for ch in "*?["):
            matches = sorted(fs.glob(path))
            for name in matches:
                if not fs.isdir(name) and not Path(name).name.startswith("."):
                    keep(protocol + name if protocol else str(Path(name)))
            if not matches:
                keep(location)
        else:
            keep(location if protocol else str(Path(path)))
    return list(found)


_recent: OrderedDict[str, bytes] = OrderedDict()
_recent_lock = Lock()
_RECENT_BYTES = 256 * 1024 * 1024


def read_input(uri: str) -> bytes:
    """The bytes of one input; the last few are kept in memory so steps don't re-read them."""
    with _recent_lock:
        if uri in _recent:
            _recent.move_to_end(uri)
            return _recent[uri]
    try:
        with fsspec.open(uri, "rb") as handle:
            data: bytes = handle.read()
    except (FileNotFoundError, IsADirectoryError) as error:
        raise Rejection(
            RejectionCode.NOT_FOUND, f"{uri} does not exist or is not a file; check the path"
        ) from error
    with _recent_lock:
        _recent[uri] = data
        while sum(len(v) for v in _recent.values()) > _RECENT_BYTES and len(_recent) > 1:
            _recent.popitem(last=False)
    return data


def forget_input(uri: str) -> None:
    """Drop an input's bytes from memory once its document is done."""
    with _recent_lock:
        _recent.pop(uri, None)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
