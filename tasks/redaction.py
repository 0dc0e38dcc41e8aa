"""One redaction for every text that leaves the process: outputs, the manifest, logs, Prefect
artifacts, events, run names and error messages (docs/security.md lists each boundary).

`redact(text)` removes:
- every live secret registered here (`register_secret`): provider API keys of the blocks in
  use, the password in a base URL, the Hugging Face token, S3 credentials, the webhook secret,
  and the known secret variables of the environment (`register_environment`), wherever they
  occur, percent- or JSON-escaped too;
- URL userinfo: `http://user:password@proxy:3128` → `http://[REDACTED]@proxy:3128`;
- header-like values: `Authorization: Bearer …`, `x-api-key: …`, `api-key=…`, `password=…`
  (as a header line, a `key=value`, a JSON or a Python dict item);
- key- and signature-like query parameters: `?api_key=…`, `&key=…`, `X-Amz-Signature=…`,
  `sig=…`, `token=…`, `AWSAccessKeyId=…`.

What it never consumes is a quote or a backslash, so JSON text stays JSON. Secrets shorter
than `MIN_SECRET_LENGTH` are not registered: they would match ordinary words (moto's "testing")
and no real key is that short.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import SecretBytes, SecretStr

MASK = "[REDACTED]"
MIN_SECRET_LENGTH = 8

#: Environment variables whose values are secrets wherever they appear.
SECRET_ENVIRONMENT = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MMFLOW_WEBHOOK_SECRET",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
)

# `scheme://userinfo@`: greedy up to the last `@` before the host (as urllib splits it).
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s?#\"'<>\\@]*(?:@[^/\s?#\"'<>\\@]*)*@"
)
# Names whose value is a credential wherever it is written, as a header, `key=value` or an item.
_NAMED = re.compile(
    # (the lookahead skips places no name starts at: 13x faster on a long transcript; a prefix
    # such as `x-` or `OPENAI_` is left before the match, unchanged)
    r"(?i)(?=[acprsx])(?P<name>(?:authorization|api[-_]?key|access[-_]?token|refresh[-_]?token"
    r"|client[-_]?secret|secret[-_]?access[-_]?key|x-amz-signature|x-amz-credential"
    r"|x-amz-security-token|password|passwd))"
    # a quoted value (JSON, a dict, `key="…"`), or a bare one after a bare name (a header line,
    # `key=value`); never a bare value after a quoted name (`"api_key": null` stays JSON)
    r"(?P<sep>\\?[\"']?\s*[:=]\s*\\?[\"']|\s*[:=]\s*)"
    # never starting with what may follow a closing quote in JSON (`:`, `,`, `]`, `}`, space)
    r"(?P<value>(?:(?:bearer|basic|token|digest)\s+)?[^\s\"'\\&,;:=)}\]<>][^\s\"'\\&,;)}\]<>]*)"
)
# Query parameters that carry a key or a signature, after `?`, `&` or `;`.
_QUERY = re.compile(
    r"(?i)(?P<lead>[?&;])(?P<name>[\w.-]{0,40}?(?:key|keyid|sig|signature|token|secret|password"
    r"|credential|auth))=(?P<value>[^&\s#\"'\\<>]+)"
)

T = TypeVar("T")


class _Registry:
    """The live secrets of this process, and one pattern matching any of them."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        forms = {value, quote(value, safe=""), json.dumps(value)[1:-1]}
        with self._lock:
            fresh = forms - self._values
            if fresh:
                self._values |= fresh
                longest_first = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, longest_first)))

    def pattern(self) -> re.Pattern[str] | None:
        return self._pattern


_registry = _Registry()


def register_secret(value: str | bytes | SecretStr | SecretBytes | None) -> None:
    """Redact `value` from everything this process writes or sends from now on."""
    if isinstance(value, (SecretStr, SecretBytes)):
        value = value.get_secret_value()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value is None:
        return
    value = value.strip()
    if len(value) >= MIN_SECRET_LENGTH:
        _registry.add(value)


def split_userinfo(url: str) -> tuple[str, str | None]:
    """`http://user:pw@host/v1` → (`http://host/v1`, `user:pw`); a URL without them as is."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url, None
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url, None
    return f"{scheme}://{host}{slash}{path}", userinfo


def with_userinfo(url: str, userinfo: str | None) -> str:
    """The inverse of `split_userinfo`: the URL a client is given."""
    if not userinfo or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{userinfo}@{rest}"


def register_url_credentials(url: str | None) -> None:
    """The password (and user) in a URL's userinfo, e.g. a provider's `base_url`."""
    userinfo = split_userinfo(url)[1] if url else None
    for part in (userinfo or "").split(":", 1):
        register_secret(part)


def register_environment(names: Iterable[str] = SECRET_ENVIRONMENT) -> None:
    """The values of the known secret variables that are set (re-read on every call)."""
    for name in names:
        register_secret(os.environ.get(name))
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "HTTPS_PROXY", "HTTP_PROXY"):
        register_url_credentials(os.environ.get(name))


def redact(text: str) -> str:
    """`text` without registered secrets, URL userinfo, credential headers and signed queries."""
    if not text:
        return text
    pattern = _registry.pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "@" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _NAMED.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
    if "=" in text:
        text = _QUERY.sub(lambda m: f"{m['lead']}{m['name']}={MASK}", text)
    return text


def redact_data(value: T) -> T:
    """Every string in nested dicts, lists and tuples redacted (keys too); other values as is."""
    if isinstance(value, str):
        return redact(value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}  # type: ignore[return-value]
    if isinstance(value, (list, tuple)):
        return type(value)(redact_data(v) for v in value)
    return value


# ---------------------------------------------------------------- logs


def _redacted_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message, exception and stack text redacted, before any handler."""
    try:
        message = record.getMessage()
    except Exception:  # bad arguments: left for the handler to report as logging does
        return record
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = redact(text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


_installed = threading.Lock()
_factory_installed = False


def install() -> None:
    """Redact every log record of this process (Python's and Prefect's loggers, whichever
    handler ships them: console, Prefect's API, pytest), and register the environment's secrets.

    Records are redacted where they are made (the record factory), so handlers configured later
    (Prefect configures its own) are covered too. Safe to call again: the environment is re-read.
    """
    global _factory_installed
    register_environment()
    with _installed:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return _redacted_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _factory_installed = True


class RedactedError(Exception):
    """Raised in place of an unexpected error whose text held a secret, with that text
    redacted: Prefect stores a failed run's state message as the exception's type and text."""


@contextmanager
def secrets_kept_out_of_errors() -> Iterator[None]:
    """A flow body's boundary: an exception escaping it whose `Type: text` would carry a
    secret (a storage library's error quoting an endpoint with its password) is replaced by a
    `RedactedError` saying the same without it; the original stays chained for the logs, which
    are redacted where they are made. Errors without a secret pass unchanged."""
    try:
        yield
    except Exception as error:
        text = f"{type(error).__name__}: {error}"
        clean = redact(text)
        if clean == text:
            raise
        raise RedactedError(clean) from error
