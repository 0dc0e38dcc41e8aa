"""Runs one input through the real first steps in this process and reports how it ended.

`main` returns the outcome (a rejection code or "ok"), the seconds the steps took, and the
process's resident memory before them and at its peak during them (Linux's VmHWM, reset first
through /proc/self/clear_refs). `run_in_child` runs it in a fresh child process per case, so no
case inherits another's memory; `python -m tests.bad_input_child document|audio URI` runs it
here and prints the JSON line.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.queues
import queue
import resource
import sys
import time
from pathlib import Path

from mmflow.tasks.audio.normalise import normalise_audio
from mmflow.tasks.audio.validate import validate_audio
from mmflow.tasks.errors import Rejection
from mmflow.tasks.inputs import hash_input, local_file, read_input
from mmflow.tasks.normalise import NormaliseOptions, detect_rotation, normalise_document
from mmflow.tasks.validate import ValidationLimits, validate_bytes


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def run_document(uri: str) -> None:
    """What the invoice flow does first (flows/runs.py, tasks/invoice.py)."""
    limits = ValidationLimits()
    hash_input(uri, limits.max_bytes)  # InvoicePipeline.max_input_bytes
    validated = validate_bytes(read_input(uri, max_bytes=limits.max_bytes), uri, limits)
    normalise_document(read_input(uri, max_bytes=limits.max_bytes), validated, NormaliseOptions())


def run_audio(uri: str) -> None:
    """What the meeting flow does first (flows/runs.py, tasks/meeting.py)."""
    hash_input(uri)
    path = local_file(uri)
    assert path is not None
    normalise_audio(validate_audio(path))


def main(pipeline: str, uri: str) -> dict[str, object]:
    if pipeline == "document":  # load the orientation detector outside the measured span
        from PIL import Image

        detect_rotation(Image.new("RGB", (64, 64), "white"))
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    base = _status_mb("VmRSS")
    started = time.perf_counter()
    try:
        (run_document if pipeline == "document" else run_audio)(uri)
        outcome = "ok"
    except Rejection as rejection:
        outcome = rejection.code.value
    return {
        "outcome": outcome,
        "seconds": round(time.perf_counter() - started, 2),
        "base_mb": round(base),
        "peak_mb": round(_status_mb("VmHWM")),
    }


ADDRESS_SPACE_LIMIT = 8 << 30  # a child past this fails with MemoryError instead of swapping
# Children fork from a server that imported this module once (2-3 s of imports saved per case);
# nothing here starts a thread at import, so forking is safe. Models load in each child.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__ if __name__ != "__main__" else "tests.bad_input_child"])


def _child(pipeline: str, uri: str, results: multiprocessing.queues.Queue) -> None:  # type: ignore[type-arg]
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    results.put(main(pipeline, uri))


def run_in_child(pipeline: str, uri: str, timeout_s: float) -> dict[str, object]:
    """Run one input in a fresh child process (under ADDRESS_SPACE_LIMIT) and return its
    report; a child that crashes, or outlives `timeout_s`, raises."""
    results = _CONTEXT.Queue()
    child = _CONTEXT.Process(target=_child, args=(pipeline, uri, results))
    child.start()
    try:
        report: dict[str, object] = results.get(timeout=timeout_s)
    except queue.Empty:
        child.kill()
        child.join()
        raise RuntimeError(
            f"{uri} ended without a report (exit {child.exitcode}) within {timeout_s} s"
        ) from None
    child.join()
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
