"""Two ways to run a `Step`, with one cache: a Prefect task per step, or inline in a batch task."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem
from prefect.results import ResultStore

from mmflow.tasks.caching import Stamped, Step
from mmflow.tasks.persist import lasting, write_bytes

logger = logging.getLogger(__name__)
R = TypeVar("R")


class StepRunner(Protocol):
    def run(self, step: Step, upstream: Sequence[Stamped[Any]], **params: Any) -> Stamped[Any]: ...


def retry_on_io(task: Task[..., Any], task_run: Any, state: Any) -> bool:
    """Retry reads and writes that can fail for a moment; never a full disk, never a bug."""
    try:
        state.result()
    except OSError as error:
        return not lasting(error)
    except Exception:
        return False
    return False


def _task_result_storage(storage: WritableFileSystem) -> WritableFileSystem | Path:
    """Tasks take result storage as a saved block or a local path, never an unsaved block."""
    if isinstance(storage, LocalFileSystem) and storage.basepath:
        return Path(storage.basepath)
    if getattr(storage, "_block_document_id", None) is None:
        digest = hashlib.sha256(storage.model_dump_json().encode()).hexdigest()[:12]
        storage.save(f"mmflow-results-{digest}", overwrite=True)
    return storage


class PrefectSteps:
    """Each step is its own task run: every step shows in the UI, cached runs show `Cached`."""

    def __init__(self, storage: WritableFileSystem | None, run_id: str, label: str = "") -> None:
        self.storage = storage
        self.run_id = run_id
        self.label = label

    def _task(self, step: Step) -> Task[..., Stamped[Any]]:
        def execute(upstream: list[Stamped[Any]], params: dict[str, Any]) -> Stamped[Any]:
            return step.compute(upstream, params, self.run_id)

        execute.__name__ = step.name
        options: dict[str, Any] = {
            "name": step.name,
            "task_run_name": f"{step.name} {self.label}".strip(),
            "retries": 2,
            "retry_delay_seconds": list(IO_RETRY_DELAYS_S[:-1]),
            "retry_condition_fn": retry_on_io,
        }
        if self.storage is None:
            options |= {"cache_policy": NO_CACHE, "persist_result": False}
        else:
            options |= {
                "cache_key_fn": lambda _ctx, p: step.key(
                    [u.key for u in p["upstream"]], p["params"]
                ),
                "persist_result": True,
                "result_storage": _task_result_storage(self.storage),
            }
        return task(execute, **options)

    def run(self, step: Step, upstream: Sequence[Stamped[Any]], **params: Any) -> Stamped[Any]:
        return self._task(step)(list(upstream), params)


IO_RETRY_DELAYS_S = (1.0, 4.0, 0.0)  # the same schedule as the per-step tasks' retries


class InlineSteps:
    """Steps called directly inside one batch task run, reading and writing the same cache.

    Two shortcuts keep a cache on an object store cheap (each lookup or write is a request):
    - keys chain from upstream keys, so once a step of a document was computed by this run, the
      steps after it cannot be in the cache (unless a record was lost) and are not looked up;
    - records are written by background threads, so a slow PUT never holds the next step.
      `flush` waits for them; a record lost to a crash only means that step runs again later.
    """

    WRITERS = 4

    def __init__(self, storage: WritableFileSystem | None, run_id: str) -> None:
        self.store = ResultStore(result_storage=storage) if storage is not None else None
        self.run_id = run_id
        self._writer: ThreadPoolExecutor | None = None
        self._writes: list[Future[None]] = []

    def run(self, step: Step, upstream: Sequence[Stamped[Any]], **params: Any) -> Stamped[Any]:
        key = step.key([u.key for u in upstream], params)
        computed_upstream = any(u.run_id == self.run_id for u in upstream)
        if self.store is not None and not computed_upstream:
            cached = self._cached(key)
            if cached is not None:
                return cached
        result = _with_io_retries(lambda: step.compute(upstream, params, self.run_id))
        if self.store is not None:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(self.WRITERS, thread_name_prefix="cache-write")
            self._writes.append(self._writer.submit(self._write, result, key))
        return result

    def _cached(self, key: str) -> Stamped[Any] | None:
        """The record under `key`, or None: a miss when there is none, and also when it cannot
        be read back (a record cut short by a kill -9 or a full disk fails to unpickle with
        `EOFError`, `UnpicklingError`, …). Such a step is computed again and its record
        rewritten; a damaged cache never fails an input."""
        assert self.store is not None
        try:
            record = self.store.read(key)
        except FileNotFoundError:
            return None
        except Exception as error:  # any damage to a record is a miss
            if _record_exists(self.store, key):
                logger.warning(
                    "cache record %s is unreadable (%s: %s); computing it again",
                    key,
                    type(error).__name__,
                    error,
                )
            return None
        return record.result if isinstance(record.result, Stamped) else None

    def _write(self, result: Stamped[Any], key: str) -> None:
        assert self.store is not None
        store = self.store
        try:
            _with_io_retries(lambda: write_record(store, result, key))
        except OSError as error:  # the result stands; only its cache record is missing
            logger.warning("could not cache %s (%s); it will be computed again", key, error)

    def __enter__(self) -> InlineSteps:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()

    def flush(self) -> None:
        """Wait until every cache record of this group is written."""
        for write in self._writes:
            write.result()
        self._writes.clear()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None


def write_record(store: ResultStore, result: Stamped[Any], key: str) -> None:
    """Write a step's cache record whole or not at all.

    Prefect's `LocalFileSystem.write_path` opens the record's final name and writes into it, so
    a kill -9 or a full disk leaves a record cut short under the real key. Local records go
    through a temporary name and a rename instead (`persist.write_bytes`); an object store
    PUT is already all-or-nothing.
    """
    if not isinstance(store.result_storage, LocalFileSystem) or store.metadata_storage:
        store.write(result, key=key)
        return
    record = store.create_result_record(result, key=key)
    path = record.metadata.storage_key
    assert path is not None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, record.serialize())


def _record_exists(store: ResultStore, key: str) -> bool:
    """Whether a record is stored under `key` at all: one that exists but fails to read is
    damaged, not missing."""
    storage = store.result_storage
    if isinstance(storage, LocalFileSystem):
        return Path(storage._resolve_path(key)).exists()
    if isinstance(storage, RemoteFileSystem):
        try:
            return bool(storage.filesystem.exists(storage._resolve_path(key)))
        except OSError:
            return False
    return True


def _with_io_retries(call: Callable[[], R]) -> R:
    """Reads and writes can fail for a moment: retry on OSError, unless it lasts (a full disk);
    a bug is not retried."""
    for pause in IO_RETRY_DELAYS_S[:-1]:
        try:
            return call()
        except OSError as error:
            if lasting(error):
                raise
            time.sleep(pause)
    return call()
