"""Typed rejections: bad input ends as a value with a stable code, never a crash."""

from __future__ import annotations

from enum import StrEnum

from mmflow.tasks.redaction import redact


class RejectionCode(StrEnum):
    """Stable codes written to `manifest.jsonl`; other tools match on them, so only add."""

    EMPTY = "empty"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_LARGE = "too_large"
    TOO_SMALL = "too_small"
    TOO_MANY_PAGES = "too_many_pages"
    TOO_LONG = "too_long"
    DECOMPRESSION_BOMB = "decompression_bomb"
    CORRUPT = "corrupt"
    ENCRYPTED_PDF = "encrypted_pdf"
    NOT_FOUND = "not_found"
    DUPLICATE = "duplicate"
    NOT_A_FILE = "not_a_file"  # a FIFO, device, socket, folder or symbolic-link loop
    LINK_OUTSIDE_FOLDER = "link_outside_folder"  # a symbolic link to a file outside its folder
    TOO_COMPLEX = "too_complex"  # structure past a work bound (e.g. a PDF's object count)


def printable(text: str) -> str:
    """`text` as valid UTF-8: bytes of a file name that were not UTF-8 appear as `\\xNN`.

    Python carries such bytes as lone surrogates (`os.fsdecode`), which JSON encoders refuse.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


class FailureCode(StrEnum):
    """Codes of inputs that ended `failed`: not bad content, but something to fix or retry.

    A missing input (`not_found`, a RejectionCode) is recorded as failed too."""

    PROCESSING_ERROR = "processing_error"  # a defect or lasting I/O trouble; the message says
    TIMEOUT = "timeout"  # ran longer than the run's input timeout
    INTERRUPTED = "interrupted"  # the run was stopped before the input could end
    CHECKS_FAILED = "checks_failed"  # a strict run, and the result's checks failed outright
    OUTPUT_NOT_WRITTEN = "output_not_written"  # OUT refused a result (full disk, store error)


class MmflowError(Exception):
    """Root of mmflow's exceptions; their text never shows a secret (tasks/redaction.py), so
    neither does a Prefect state message, a log line or a manifest line made from one."""

    def __str__(self) -> str:
        return redact(super().__str__())


class Rejection(MmflowError):
    """The input cannot be processed; `message` tells a person what to do about it."""

    def __init__(self, code: RejectionCode, message: str) -> None:
        message = printable(message)  # it ends in JSON: the manifest, Prefect, events
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[Rejection], tuple[RejectionCode, str]]:
        # Prefect pickles task exceptions; keep both fields across the trip.
        return (Rejection, (self.code, self.message))


class MissingDependency(MmflowError):
    """An optional engine was asked for but its package or program is not installed."""

    def __init__(self, what: str, install: str) -> None:
        super().__init__(f"{what} is not available: {install}")
        self.what = what
        self.install = install


class InvalidOutputLocation(MmflowError, ValueError):
    """`out` cannot hold a run's outputs (a relative path, an existing file)."""


class OutputBusy(MmflowError):
    """Another run holds the output folder's lock (two batches into one folder)."""


class OutputNotWritten(MmflowError, OSError):
    """A file in the output folder could not be written (no space left, a storage error).

    An `OSError` still (callers that retry I/O see one), with a message that names the file,
    its folder and the cause, and says what to do.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[OutputNotWritten], tuple[str, int | None]]:
        return (type(self), (self.message, self.errno))
