"""The original file name of an upload, made safe to show: runs are named by it, nothing else.

A caller may say what the file was called (`X-Mmflow-Filename`, percent-encoded UTF-8, or a
`Content-Disposition: attachment; filename=…`); a `{"uri"}` input is called by its last path
segment. The name is never used as a path (uploads are stored by their sha256), but it appears in
the Prefect UI, logs and run names, so it is reduced to one line of printable text: no
directories, no control or invisible formatting characters (a right-to-left override could
disguise `fdp.exe` as `exe.pdf`), no leading dots, at most `MAX_FILENAME_BYTES` of UTF-8.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from email.message import Message
from urllib.parse import unquote

from mmflow.deployments.signing import FILENAME_HEADER

MAX_FILENAME_BYTES = 200  # well under the 255-byte name limit of common file systems


def sanitise_filename(raw: str) -> str | None:
    """A one-line, printable base name for `raw`, or None when nothing of it is left."""
    name = unicodedata.normalize("NFC", raw)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # POSIX or Windows directories
    # Line breaks and tabs become spaces; the rest of category C goes: control (Cc), format
    # (Cf: bidi overrides, zero-width), surrogates (Cs, from undecodable bytes), private use
    # (Co) and unassigned (Cn).
    name = "".join(" " if ch.isspace() else ch for ch in name if not _invisible(ch) or ch.isspace())
    name = " ".join(name.split()).lstrip(". ").rstrip()
    return _truncate(name, MAX_FILENAME_BYTES) or None


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch).startswith("C")


def _truncate(name: str, limit: int) -> str:
    """`name` cut to `limit` UTF-8 bytes on a character boundary, keeping a short extension."""
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension.encode("utf-8")) > 16:
        stem, extension = name, ""
    suffix = f".{extension}" if extension else ""
    room = limit - len(suffix.encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore").rstrip()
    return cut + suffix


def filename_from_headers(headers: Mapping[str, str]) -> str | None:
    """The sanitised name a caller gave the upload, from either header; None when absent."""
    given = headers.get(FILENAME_HEADER)
    if given:
        return sanitise_filename(unquote(given, errors="replace"))
    disposition = headers.get("content-disposition")
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        parsed = message.get_filename()  # decodes RFC 2231 `filename*=UTF-8''…` too
        if parsed:
            return sanitise_filename(parsed)
    return None


def filename_from_path(path: str) -> str | None:
    """The sanitised last segment of a path or URI (a `{"uri"}` input's name)."""
    return sanitise_filename(path.rstrip("/"))
