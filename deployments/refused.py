"""A webhook request refused: an HTTP status, a stable code and a message a caller can act on."""

from __future__ import annotations

from starlette.responses import JSONResponse

from mmflow.tasks.redaction import redact


class Refused(Exception):
    """Raised anywhere in the receiver; the request handler turns it into the response."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        # Close the connection: the body of a refused request may not have been read.
        return JSONResponse(
            {"error": self.code, "message": redact(self.message)},  # it may quote a storage error
            self.status,
            headers={"Connection": "close"},
        )
