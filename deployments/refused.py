"""A webhook request refused: an HTTP status, a stable code and a message a caller can act on.

The codes are the receiver's contract with its callers (docs/webhook.md lists each with its
status): a caller branches on the code, never on the message, so codes are only ever added,
never renamed. `RefusalCode` makes mypy refuse a code that is not in the list.
"""

from __future__ import annotations

from typing import Literal, get_args

from starlette.responses import JSONResponse

from mmflow.tasks.redaction import redact

RefusalCode = Literal[
    # the request itself
    "empty",
    "malformed",
    "bad_length",
    "length_required",
    "disconnected",
    "body_timeout",
    "too_large",
    "unsupported_media_type",
    "unknown_scenario",
    "unknown",
    # its signature
    "missing_signature",
    "bad_signature",
    "unsupported_signature_version",
    "stale_timestamp",
    "replayed",
    # a {"uri"} input
    "uri_inputs_disabled",
    "uri_not_allowed",
    "unsupported_uri",
    "not_found",
    "not_a_file",
    "unreadable",
    # the receiver's own state
    "outbox_unavailable",
]
REFUSAL_CODES: tuple[str, ...] = get_args(RefusalCode)


class Refused(Exception):
    """Raised anywhere in the receiver; the request handler turns it into the response."""

    def __init__(self, status: int, code: RefusalCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code: RefusalCode = code
        self.message = message

    def response(self) -> JSONResponse:
        # Close the connection: the body of a refused request may not have been read.
        return JSONResponse(
            {"error": self.code, "message": redact(self.message)},  # it may quote a storage error
            self.status,
            headers={"Connection": "close"},
        )
