"""Where inputs come from: files, folders, globs and fsspec URIs (s3://…), read within bounds.

Reading (docs/bad-inputs.md): an input is judged from its metadata before a byte is read. It
must be a regular file, since a FIFO blocks the reader forever and a link to /dev/zero never
ends, and its size must be within the bound of the read; only then is it read, with the bound
held again (a file can grow in between), or hashed by streaming. A symbolic link is followed
only to a file inside the folder that holds the link: a link planted in an input folder must
not expose the rest of the machine.

Names: Linux allows file names that are not UTF-8, but such a name cannot travel as JSON (Prefect
parameters and run names, the manifest). Such a name is carried as a `file://` URI with its path
percent-encoded (RFC 8089), e.g. `file:///in/caf%E9.pdf` for the bytes `caf\\xe9.pdf`;
`local_file` maps it back to the real bytes. Every other name stays as it was given.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Lock
from typing import BinaryIO
from urllib.parse import quote, unquote_to_bytes

import fsspec

from mmflow.tasks.errors import Rejection, RejectionCode
from mmflow.tasks.filesystems import require_filesystem
from mmflow.tasks.redaction import redact

MB = 1024 * 1024
# Ceiling of one read into memory. The real limit of a document is ValidationLimits.max_bytes
# (its step passes it); this one holds for every other read.
MAX_READ_BYTES = 1024 * MB
# Ceiling of any input, hashed or copied by streaming (4 h of 24-bit 48 kHz stereo WAV fits).
MAX_INPUT_BYTES = 4096 * MB
_BLOCK = 1 * MB
FILE_URI = "file://"


def _is_remote(location: str) -> bool:
    return "://" in location and not location.startswith(FILE_URI)


def carried_name(path: str) -> str:
    """`path` itself, or a percent-encoded `file://` URI when its bytes are not UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(os.path.abspath(path))
        return FILE_URI + quote(raw, safe="/")
    return path


def local_file(uri: str) -> Path | None:
    """The local path `uri` names (a plain path or a `file://` URI), or None for remote URIs."""
    if uri.startswith(FILE_URI):
        return Path(os.fsdecode(unquote_to_bytes(uri[len(FILE_URI) :])))
    if _is_remote(uri):
        return None
    return Path(uri)


class CredentialsInLocation(ValueError):
    """An input, OUT or batch source written with credentials in it (a password in the URL, a
    key or signature query parameter). A flow run's parameters are stored as given in Prefect's
    database, so such a location is refused before any work; credentials go in the environment
    or a storage block (docs/security.md)."""


def refuse_credentials(locations: list[str], what: str) -> None:
    """Raise `CredentialsInLocation` naming the first location that carries credentials."""
    for location in locations:
        shown = redact(location)
        if shown != location:
            raise CredentialsInLocation(
                f"{what} {shown} carries credentials (a password in the URL, or a key or "
                "signature parameter), which Prefect would store with the run's parameters; "
                "give storage credentials through the environment (AWS_ACCESS_KEY_ID, …) or a "
                "storage block instead"
            )


def expand_inputs(locations: list[str]) -> list[str]:
    """Every file named, found below a folder or matched by a glob, sorted and without repeats.

    A folder is walked recursively; links to folders are listed, not followed (no walk out of
    the folder, no loop). No file is skipped for its name (only hidden dot-files): what a file
    is, validate decides from its bytes, and a file that is not a document ends in the manifest
    as a rejection rather than vanishing. Names that match nothing are kept too, so they end in
    the manifest as `not_found`.
    """
    found: dict[str, None] = {}

    def keep(name: str) -> None:
        found.setdefault(carried_name(name), None)

    for location in locations:
        require_filesystem(location)  # a clear "pip install …" instead of an ImportError
        local = local_file(location)
        fs, path = fsspec.core.url_to_fs(str(local) if local is not None else location)
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


# ---------------------------------------------------------------- what a path is, before reading

_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO), which would block the reader",
    stat.S_IFCHR: "a character device (such as /dev/zero), which may never end",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def _not_a_file(uri: str, mode: int) -> Rejection:
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return Rejection(
        RejectionCode.NOT_A_FILE,
        f"{uri} is {kind}, not a regular file; submit the document or recording itself.",
    )


def _too_large(uri: str, size: int, max_bytes: int) -> Rejection:
    return Rejection(
        RejectionCode.TOO_LARGE,
        f"{uri} is {size / MB:,.1f} MB; the limit is {max_bytes / MB:,.0f} MB. Split it "
        "(separate documents, shorter recordings) or compress it, and submit again.",
    )


def check_local_file(path: Path, uri: str, max_bytes: int) -> int:
    """Size of the regular file at `path`, or the rejection that says what it is instead."""
    try:
        is_link = path.is_symlink()
        info = os.stat(path)
    except FileNotFoundError as error:
        what = "is a symbolic link to nothing" if path.is_symlink() else "does not exist"
        raise Rejection(
            RejectionCode.NOT_FOUND, f"{uri} {what} or is not a file; check the path"
        ) from error
    except PermissionError as error:
        raise Rejection(
            RejectionCode.NOT_FOUND, f"{uri} cannot be read (permission denied); check its rights"
        ) from error
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise Rejection(
                RejectionCode.NOT_A_FILE,
                f"{uri} is a symbolic link that loops back on itself; point it at a real file.",
            ) from error
        raise
    if is_link:
        folder = os.path.realpath(path.parent)
        if not os.path.realpath(path).startswith(folder.rstrip(os.sep) + os.sep):
            raise Rejection(
                RejectionCode.LINK_OUTSIDE_FOLDER,
                f"{uri} is a symbolic link to a file outside its folder; such links are not "
                "followed (one planted in an input folder could expose any file). Copy the "
                "file into the folder, or name its real path.",
            )
    if not stat.S_ISREG(info.st_mode):
        raise _not_a_file(uri, info.st_mode)
    if info.st_size > max_bytes:
        raise _too_large(uri, info.st_size, max_bytes)
    return info.st_size


@contextmanager
def open_input(uri: str, max_bytes: int = MAX_INPUT_BYTES) -> Iterator[BinaryIO]:
    """A binary handle on a regular file of at most `max_bytes`, judged before it is opened.

    A local file is opened non-blocking and checked again on its descriptor, so a file swapped
    for a FIFO between the check and the open cannot block the reader either.
    """
    local = local_file(uri)
    if local is not None:
        check_local_file(local, uri, max_bytes)
        try:
            fd = os.open(local, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as error:
            raise Rejection(RejectionCode.NOT_FOUND, f"{uri} vanished; check the path") from error
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise _not_a_file(uri, mode)
        with os.fdopen(fd, "rb") as handle:
            yield handle
        return
    require_filesystem(uri)
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        info = fs.info(path)
    except FileNotFoundError as error:
        raise Rejection(
            RejectionCode.NOT_FOUND, f"{uri} does not exist or is not a file; check the path"
        ) from error
    if info.get("type") != "file":
        raise Rejection(
            RejectionCode.NOT_A_FILE, f"{uri} is a folder or prefix, not a file; name a file."
        )
    if int(info.get("size") or 0) > max_bytes:
        raise _too_large(uri, int(info["size"]), max_bytes)
    with fs.open(path, "rb") as handle:
        yield handle


def _read_bounded(handle: BinaryIO, uri: str, max_bytes: int) -> Iterator[bytes]:
    """The handle's blocks, refusing the input once more than `max_bytes` came out."""
    total = 0
    while block := handle.read(_BLOCK):
        total += len(block)
        if total > max_bytes:
            raise _too_large(uri, total, max_bytes)
        yield block


_recent: OrderedDict[str, bytes] = OrderedDict()
_recent_lock = Lock()
_RECENT_BYTES = 256 * MB


def read_input(uri: str, max_bytes: int = MAX_READ_BYTES) -> bytes:
    """The bytes of one input, at most `max_bytes` of them; the last few stay in memory so
    steps don't re-read them."""
    with _recent_lock:
        if uri in _recent:
            _recent.move_to_end(uri)
            data = _recent[uri]
            if len(data) > max_bytes:
                raise _too_large(uri, len(data), max_bytes)
            return data
    with open_input(uri, max_bytes) as handle:
        data = b"".join(_read_bounded(handle, uri, max_bytes))
    with _recent_lock:
        _recent[uri] = data
        while sum(len(v) for v in _recent.values()) > _RECENT_BYTES and len(_recent) > 1:
            _recent.popitem(last=False)
    return data


_digests: OrderedDict[tuple[str, int, int, int], str] = OrderedDict()
_DIGESTS = 100_000  # remembered local digests (a batch hashes while planning, then per input)


def hash_input(uri: str, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """sha256 of an input's bytes, read by streaming: memory stays one block whatever its size.

    A local file's digest is remembered by (name, size, modification time, inode), so hashing
    the same unchanged file again costs a `stat`, not a read.
    """
    with _recent_lock:
        cached = _recent.get(uri)
    if cached is not None:
        return sha256_of(cached)
    with open_input(uri, max_bytes) as handle:
        key = _identity(uri, handle)
        with _recent_lock:
            known = _digests.get(key) if key else None
        if known is not None:
            return known
        digest = hashlib.sha256()
        for block in _read_bounded(handle, uri, max_bytes):
            digest.update(block)
    if key:
        with _recent_lock:
            _digests[key] = digest.hexdigest()
            while len(_digests) > _DIGESTS:
                _digests.popitem(last=False)
    return digest.hexdigest()


def _identity(uri: str, handle: BinaryIO) -> tuple[str, int, int, int] | None:
    """What tells a local file's content changed; None for remote objects."""
    try:
        info = os.fstat(handle.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return (uri, info.st_size, info.st_mtime_ns, info.st_ino)


def copy_input(uri: str, target: Path, max_bytes: int = MAX_INPUT_BYTES) -> None:
    """Copy an input to a local file by streaming (programs such as FFmpeg read files)."""
    with open_input(uri, max_bytes) as handle, target.open("wb") as copy:
        for block in _read_bounded(handle, uri, max_bytes):
            copy.write(block)


def forget_input(uri: str) -> None:
    """Drop an input's bytes from memory once its document is done."""
    with _recent_lock:
        _recent.pop(uri, None)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
