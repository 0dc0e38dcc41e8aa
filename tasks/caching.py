"""Content-addressed step results shared by both ways of running a pipeline.

A step's cache key is sha256(step name, step version, the keys of its upstream results, its
parameters). The version is the hash of the source files that implement the step, and the first
step's upstream is the input's own sha256, so keys form a chain: re-running the same inputs
recomputes nothing, and editing one step changes its key and every key below it, so only that
step and the steps after it run again.

Per-step Prefect tasks use these keys as their `cache_key_fn`; a grouped batch task reads and
writes the very same records through Prefect's `ResultStore`, so a document cached by one mode
is cached for the other.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from mmflow.tasks.errors import Rejection
from mmflow.tasks.models import ErrorInfo, LineageStep

T = TypeVar("T")


class Stamped(BaseModel, Generic[T]):
    """A step's result with the key that addresses it and how it was produced."""

    key: str
    value: T
    lineage: LineageStep
    run_id: str = ""  # the flow run (or process) that computed it: differs when read from cache


class Rejected(BaseModel):
    """A step's verdict that the input cannot be processed (cached like any result)."""

    step: str
    error: ErrorInfo


def _hash_parameters(params: Mapping[str, Any]) -> str:
    def encode(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        return str(value)

    return json.dumps({k: encode(v) for k, v in sorted(params.items())}, sort_keys=True)


@dataclass(frozen=True)
class Step:
    """One pipeline step: a plain function, the modules that implement it, and its engine."""

    name: str
    fn: Callable[..., Any]
    modules: tuple[str, ...]
    engine: Callable[[Mapping[str, Any]], str] = field(default=lambda params: "")
    # What actually ran, when the result tells better than the parameters (a document's pages
    # may be read from the text layer, not by the configured OCR engine).
    engine_of: Callable[[Any], str] | None = None

    @cached_property
    def version(self) -> str:
        """Hash of the step's source: its function (the adapter a pipeline wraps around the
        plain function) and the files that implement it. Editing either invalidates its results.
        """
        digest = hashlib.sha256()
        try:
            digest.update(inspect.getsource(self.fn).encode())
        except (OSError, TypeError):  # no source to read (a builtin, an interactive session)
            digest.update(getattr(self.fn, "__qualname__", repr(self.fn)).encode())
        for module_name in self.modules:
            module = importlib.import_module(module_name)
            file = getattr(module, "__file__", None)
            paths = [Path(file)] if file else []
            if file and Path(file).name == "__init__.py":  # a package: every module in it
                paths = sorted(Path(file).parent.rglob("*.py"))
            for path in paths:
                digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    def key(self, upstream: Sequence[str], params: Mapping[str, Any]) -> str:
        material = json.dumps([self.name, self.version, list(upstream), _hash_parameters(params)])
        return f"{self.name}-{hashlib.sha256(material.encode()).hexdigest()}"

    def compute(
        self, upstream: Sequence[Stamped[Any]], params: Mapping[str, Any], run_id: str
    ) -> Stamped[Any]:
        """Run the plain function; a Rejection becomes a `Rejected` value, not an exception."""
        key = self.key([u.key for u in upstream], params)
        started = time.perf_counter()
        value: Any
        try:
            value = self.fn(*[u.value for u in upstream], **params)
        except Rejection as rejection:
            value = Rejected(
                step=self.name,
                error=ErrorInfo(code=rejection.code.value, message=rejection.message),
            )
        return Stamped(
            key=key,
            value=value,
            run_id=run_id,
            lineage=LineageStep(
                name=self.name,
                version=self.version,
                engine=(
                    self.engine_of(value)
                    if self.engine_of is not None and not isinstance(value, Rejected)
                    else self.engine(params)
                ),
                cache_key=key,
                duration_s=round(time.perf_counter() - started, 4),
            ),
        )


def source_key(sha256: str) -> Stamped[str]:
    """The root of every key chain: the input, known by the sha256 of its bytes."""
    return Stamped(
        key=f"input-{sha256}",
        value=sha256,
        lineage=LineageStep(name="input", version="", cache_key=f"input-{sha256}"),
    )


class Stopped(Exception):
    """Raised by a pipeline when a step rejected its input: the rest of the steps are skipped."""

    def __init__(self, rejected: Rejected) -> None:
        super().__init__(f"{rejected.step}: {rejected.error.code}")
        self.rejected = rejected


def unless_rejected(stamped: Stamped[T]) -> Stamped[T]:
    """Pass a step's result on, or stop the pipeline if the step rejected the input."""
    if isinstance(stamped.value, Rejected):
        raise Stopped(stamped.value)
    return stamped
