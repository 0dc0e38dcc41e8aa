"""Which `{"uri": …}` inputs the webhook receiver may fetch, and fetching them safely.

A signed caller may name an input by URI instead of sending its bytes, but only under a prefix
the operator allowed (`--allow-uri-prefix`; none by default, so no URI input at all). A string
prefix check is not enough: `/srv/inbox/../../etc/passwd` starts with `/srv/inbox/`, a symlink
inside the inbox can point anywhere, and `s3://bucket/inbox` is a string prefix of
`s3://bucket/inbox-private/`. So the URI is resolved first and compared with each allowed root
component by component:

- a local path (bare or `file://`) is resolved to its real path (`..` and every symlink
  followed), the file is opened without following a last-moment symlink, must be a regular file
  (not a FIFO or a device such as /dev/zero), and the path of what was actually opened is
  checked again;
- any other fsspec URI (s3://, memory://, …) must use the same file system as the root and may
  not contain `.`, `..` or empty segments (also percent-encoded); the object must be a file and
  not a link;
- chained URLs (`zip://…::s3://…`) are refused: they read one file system through another.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO, Any
from urllib.parse import unquote

import fsspec
from fsspec.implementations.local import LocalFileSystem

from mmflow.deployments.refused import Refused
from mmflow.tasks.redaction import redact

MB = 1024 * 1024
SPOOL_IN_MEMORY = 8 * MB  # larger inputs spill to a temporary file, not RAM
_PROC_FD = Path("/proc/self/fd")  # Linux: where an open file's real path can be read back


@dataclass(frozen=True)
class _Root:
    """One allowed prefix: a real local folder, or a file system and its path segments."""

    local: Path | None
    fs_type: type | None
    parts: tuple[str, ...]


@dataclass(frozen=True)
class AllowedInput:
    """A URI that passed the allow-list: where to read it, and the name it had."""

    uri: str
    fs: Any  # fsspec.AbstractFileSystem
    path: str
    local: bool


def _segments(path: str) -> tuple[str, ...]:
    inner = path.strip("/")
    return tuple(inner.split("/")) if inner else ()


def _url_to_fs(uri: str) -> tuple[Any, str]:
    if "::" in uri:
        raise Refused(403, "uri_not_allowed", f"{uri}: chained URLs (::) are not accepted")
    try:
        return fsspec.core.url_to_fs(uri)
    except ImportError as error:
        raise Refused(400, "unsupported_uri", f"{uri}: no storage driver ({error})") from error
    except ValueError as error:  # an unknown protocol
        raise Refused(400, "unsupported_uri", f"{uri}: {error}") from error


class UriAllowList:
    """The allowed prefixes, parsed once; `resolve` admits a URI or refuses it (403/400)."""

    def __init__(self, prefixes: Sequence[str]) -> None:
        self.prefixes = tuple(prefixes)
        self._roots = tuple(self._root(prefix) for prefix in self.prefixes)

    @staticmethod
    def _root(prefix: str) -> _Root:
        fs, path = _url_to_fs(prefix)
        if isinstance(fs, LocalFileSystem):
            return _Root(local=Path(os.path.realpath(path)), fs_type=None, parts=())
        return _Root(local=None, fs_type=type(fs), parts=_segments(path))

    def _refusal(self, uri: str, why: str) -> Refused:
        if not self.prefixes:
            return Refused(
                403,
                "uri_inputs_disabled",
                "this receiver takes no URI inputs; send the file as the body, or start it "
                "with --allow-uri-prefix",
            )
        allowed = ", ".join(self.prefixes)
        return Refused(403, "uri_not_allowed", f"{uri}: {why}; allowed prefixes: {allowed}")

    def allows_local(self, real: str) -> bool:
        return any(
            root.local is not None and PurePath(real).is_relative_to(root.local)
            for root in self._roots
        )

    def resolve(self, uri: str) -> AllowedInput:
        if not self.prefixes:
            raise self._refusal(uri, "")
        if not uri or any(ord(ch) < 32 or ord(ch) == 127 for ch in uri):
            raise Refused(400, "malformed", "the uri is empty or holds control characters")
        if redact(uri) != uri:  # it would be stored with the run's parameters (docs/security.md)
            raise self._refusal(redact(uri), "credentials in a URI are not accepted")
        fs, path = _url_to_fs(uri)
        if isinstance(fs, LocalFileSystem):
            real = os.path.realpath(path)  # `..` and every symlink resolved
            if not self.allows_local(real):
                raise self._refusal(uri, f"resolves to {real}, outside the allowed folders")
            return AllowedInput(uri=uri, fs=fs, path=real, local=True)
        parts = _segments(path)
        if any(unquote(part) in ("", ".", "..") for part in parts):
            raise self._refusal(uri, "'.', '..' and empty path segments are not accepted")
        allowed = any(
            root.fs_type is type(fs) and parts[: len(root.parts)] == root.parts
            for root in self._roots
        )
        if not allowed:
            raise self._refusal(uri, "not under an allowed prefix")
        return AllowedInput(uri=uri, fs=fs, path=path, local=False)


def _spooled_copy(handle: IO[bytes], uri: str, limit: int) -> tuple[IO[bytes], str, int]:
    """Copy `handle` into a spool, hashing it; refuses past `limit` bytes."""
    # Returned to the caller, who closes it; closed here if the copy fails.
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    sha, total = hashlib.sha256(), 0
    try:
        while chunk := handle.read(MB):
            total += len(chunk)
            if total > limit:
                raise Refused(413, "too_large", f"{uri} exceeds the limit of {limit} bytes")
            sha.update(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    return spool, sha.hexdigest(), total


def _open_local(allowed: UriAllowList, source: AllowedInput, limit: int) -> IO[bytes]:
    """Open the resolved path: no symlink swapped in since, a regular file, within the limit."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC  # NONBLOCK: a FIFO
    fd = os.open(source.path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(400, "not_a_file", f"{source.uri} is not a regular file")
        if _PROC_FD.is_dir():  # what was opened, whatever happened to the path meanwhile
            opened = os.readlink(_PROC_FD / str(fd))
            if not allowed.allows_local(opened):
                raise Refused(403, "uri_not_allowed", f"{source.uri} changed while opening")
        if info.st_size > limit:
            raise Refused(
                413, "too_large", f"{source.uri} is {info.st_size} bytes; the limit is {limit}"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _open_remote(source: AllowedInput, limit: int) -> IO[bytes]:
    info = source.fs.info(source.path)
    if info.get("islink") or info.get("type") != "file":
        raise Refused(400, "not_a_file", f"{source.uri} is not a file")
    size = info.get("size")
    if size is not None and size > limit:
        raise Refused(413, "too_large", f"{source.uri} is {size} bytes; the limit is {limit}")
    handle: IO[bytes] = source.fs.open(source.path, "rb")
    return handle


def fetch(allowed: UriAllowList, source: AllowedInput, limit: int) -> tuple[IO[bytes], str, int]:
    """The bytes of an admitted input in a spool: (spool, sha256, size)."""
    try:
        if source.local:
            handle = _open_local(allowed, source, limit)
        else:
            handle = _open_remote(source, limit)
        with handle:
            return _spooled_copy(handle, source.uri, limit)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
        raise Refused(400, "not_found", f"{source.uri} does not exist or is not a file") from error
    except OSError as error:  # ELOOP from O_NOFOLLOW, permissions, …
        reason = error.strerror or type(error).__name__
        raise Refused(400, "unreadable", f"{source.uri} cannot be read ({reason})") from error
