"""Content-addressed step results shared by both ways of running a pipeline.

A step's cache key is sha256(step name, step version, the keys of its upstream results, its
parameters). The first step's upstream is the input's own sha256, so keys form a chain:
re-running the same inputs recomputes nothing, and a change to one step changes its key and every
key below it, so only that step and the steps after it run again.

The version is complete by construction (docs/architecture.md, "Cache keys"): it hashes the
step function's source, every first-party module the function refers to together with every
first-party module those import (transitively, lazy imports included), the data files those
modules declare in `DATA_FILES` (such as tasks/prices.toml), and the step's engine label (library
versions). Nothing is listed by hand, so editing a price table, a model definition or any module
a step depends on recomputes exactly the steps that depend on it.

Per-step Prefect tasks use these keys as their `cache_key_fn`; a grouped batch task reads and
writes the very same records through Prefect's `ResultStore`, so a document cached by one mode
is cached for the other.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import json
import textwrap
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
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


FIRST_PARTY = "mmflow."


@cache
def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _imported_names(
    node: ast.Import | ast.ImportFrom, package: str, first_party_only: bool = False
) -> Iterator[tuple[str, str]]:
    """(name bound in the importing module, the module it comes from) for one import.

    Telling a submodule from a name needs `find_spec`, which imports the parent: it is asked
    only when the parent is a package (a name from a plain module is never a submodule), and
    `first_party_only` skips third-party imports, so computing a cache key never loads a
    library (or a first-party module) the step itself does not. Only first-party modules enter
    a version, so callers lose nothing by skipping the others."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield (alias.asname or alias.name).split(".")[0], alias.name
        return
    base = node.module or ""
    if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(filter(None, [*anchor, base]))
    if first_party_only and not base.startswith(FIRST_PARTY):
        return
    base_file = _module_file(base)
    is_package = base_file is not None and base_file.name == "__init__.py"
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        is_submodule = is_package and _module_file(submodule) is not None
        yield alias.asname or alias.name, submodule if is_submodule else base


@dataclass(frozen=True)
class _ModuleSource:
    """A parsed first-party module: its top-level definitions and where its imports come from."""

    definitions: dict[str, str]  # def/class/assignment name → its source
    imported: dict[str, str]  # name → module it was imported from (top level)
    imports: frozenset[str]  # every first-party module imported anywhere (lazy ones too)
    declares_data_files: bool  # has a top-level `DATA_FILES` (read by importing the module)


def _segment(lines: list[str], node: ast.stmt) -> str:
    """The exact source of a top-level statement (as `ast.get_source_segment`, which splits
    the whole file again on every call: ~1 s per command over the invoice steps' modules)."""
    end = node.end_lineno or node.lineno
    first, last = lines[node.lineno - 1], lines[end - 1]
    if node.lineno == end:
        return first.encode()[node.col_offset : node.end_col_offset].decode()
    head = first.encode()[node.col_offset :].decode()
    tail = last.encode()[: node.end_col_offset].decode()
    return "".join([head, *lines[node.lineno : end - 1], tail])


@cache
def _parse(name: str) -> _ModuleSource | None:
    path = _module_file(name)
    if path is None:
        return None
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    definitions: dict[str, str] = {}
    imported: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            definitions[node.name] = _segment(lines, node)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Name):
                        definitions[leaf.id] = _segment(lines, node)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            imported.update(_imported_names(node, package, first_party_only=True))
    everywhere = {
        module
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for _, module in _imported_names(node, package, first_party_only=True)
        if module.startswith(FIRST_PARTY) and _module_file(module) is not None
    }
    return _ModuleSource(definitions, imported, frozenset(everywhere), "DATA_FILES" in definitions)


def _names_in(source: str) -> set[str]:
    """Every identifier a piece of code reads (annotations included: they are types too)."""
    tree = ast.parse(textwrap.dedent(source))
    names = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    for node in ast.walk(tree):  # quoted types: cast("Report", …), "list[Page]"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                expression = ast.parse(node.value.strip(), mode="eval")
            except SyntaxError:
                continue  # prose (a docstring, a message): not code
            names |= {n.id for n in ast.walk(expression) if isinstance(n, ast.Name)}
    return names


def _own_module_slice(fn: Callable[..., Any]) -> tuple[list[str], set[str]]:
    """The source of `fn` and of every definition of its own module it uses, transitively, and
    the other modules those refer to. A step whose adapter sits beside other steps' adapters
    (tasks/invoice.py, tasks/image.py) so depends only on what it actually uses."""
    parsed = _parse(fn.__module__)
    own = inspect.getsource(fn)
    if parsed is None or "<locals>" in fn.__qualname__:  # a closure: resolve names by value
        namespace = getattr(fn, "__globals__", {})
        values = [namespace[name] for name in _names_in(own) if name in namespace]
        return [own], {
            value.__name__ if isinstance(value, types.ModuleType) else value.__module__
            for value in values
            if isinstance(value, types.ModuleType)
            or isinstance(getattr(value, "__module__", None), str)
        }
    used: dict[str, str] = {}  # name → source, hashed in name order: sets iterate randomly
    modules: set[str] = set()
    seen = {fn.__name__}
    todo = [own]
    while todo:
        for name in sorted(_names_in(todo.pop()) - seen):
            seen.add(name)
            if name in parsed.definitions:
                used[name] = parsed.definitions[name]
                todo.append(parsed.definitions[name])
            elif name in parsed.imported:
                modules.add(parsed.imported[name])
    parts = [own, *(used[name] for name in sorted(used))]
    return parts, modules


def dependency_files(modules: set[str] | Sequence[str]) -> list[Path]:
    """Every source and data file of the first-party `modules` and all they import, in a stable
    order. Third-party code enters keys through the step's engine label instead."""
    todo = [m for m in modules if _module_file(m) is not None]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parsed = _parse(name)
        todo += [m for m in (parsed.imports if parsed else ()) if m not in seen]
    files: list[Path] = []
    for name in sorted(seen):
        path = _module_file(name)
        if path is not None:
            files.append(path)
            parsed = _parse(name)
            if parsed is not None and parsed.declares_data_files:
                files += _data_files(name, path)
    return files


def _data_files(name: str, path: Path) -> list[Path]:
    """Files a module declares it reads (`DATA_FILES`, names relative to the module). Only
    modules that declare them are imported: importing every dependency to look would load
    pandas and more into a command that needs none of it."""
    declared = getattr(importlib.import_module(name), "DATA_FILES", ())
    return [path.parent / file for file in declared]


@dataclass(frozen=True)
class Step:
    """One pipeline step: a plain function and the engine (library) it runs."""

    name: str
    fn: Callable[..., Any]
    engine: Callable[[Mapping[str, Any]], str] = field(default=lambda params: "")
    # What actually ran, when the result tells better than the parameters (a document's pages
    # may be read from the text layer, not by the configured OCR engine).
    engine_of: Callable[[Any], str] | None = None
    # Modules the step reaches by name at run time (plugins), which no import statement shows.
    modules: tuple[str, ...] = ()

    @cached_property
    def version(self) -> str:
        """Hash of everything the step's result depends on in this code base (module docstring).

        `modules` adds modules the step reaches by name at run time (plugins), which no import
        statement shows.
        """
        digest = hashlib.sha256()
        fn = inspect.unwrap(self.fn)
        try:
            parts, modules = _own_module_slice(fn)
        except (OSError, TypeError):  # no source to read (a builtin, an interactive session)
            parts, modules = [getattr(fn, "__qualname__", repr(fn))], set()
        for part in parts:
            digest.update(part.encode())
        first_party = {m for m in modules if m.startswith(FIRST_PARTY)} | set(self.modules)
        for path in dependency_files(first_party):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    @cached_property
    def _engine_labels(self) -> dict[str, str]:
        return {}

    def engine_label(self, params: Mapping[str, Any], encoded: str | None = None) -> str:
        """The engine (library and version) these parameters select; memoised, as a metadata
        lookup costs ~1 ms and keys are computed for every step of every input."""
        encoded = encoded if encoded is not None else _hash_parameters(params)
        if encoded not in self._engine_labels:
            self._engine_labels[encoded] = self.engine(params)
        return self._engine_labels[encoded]

    def key(self, upstream: Sequence[str], params: Mapping[str, Any]) -> str:
        encoded = _hash_parameters(params)
        material = json.dumps(
            [
                self.name,
                self.version,
                self.engine_label(params, encoded),  # library versions: a new OCR engine reads anew
                list(upstream),
                encoded,
            ]
        )
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
                    else self.engine_label(params)
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
