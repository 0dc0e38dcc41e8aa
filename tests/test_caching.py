"""Cache keys chain from the input hash through each step's version and parameters."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore

from mmflow.flows.steps import InlineSteps
from mmflow.tasks.caching import Rejected, Step, source_key
from mmflow.tasks.errors import Rejection, RejectionCode


def _module(tmp_path: Path, name: str, body: str) -> str:
    (tmp_path / f"{name}.py").write_text(body)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    return name


@pytest.fixture
def toy_steps(tmp_path: Path) -> tuple[list[Step], dict[str, int]]:
    calls = {"first": 0, "second": 0, "third": 0}

    def counted(name: str):
        def fn(value: str, **params: object) -> str:
            calls[name] += 1
            return f"{value}>{name}"

        return fn

    steps = [
        Step(
            name,
            counted(name),
            modules=(_module(tmp_path, f"toy_{name}_{id(calls)}", f"V = '{name}'\n"),),
        )
        for name in calls
    ]
    return steps, calls


def _run_chain(steps: list[Step], runner: InlineSteps, sha: str) -> str:
    current = source_key(sha)
    with runner:  # waits for the cache records written in the background
        for step in steps:
            current = runner.run(step, [current], level=1)
    return str(current.value)


def test_same_input_twice_recomputes_nothing(tmp_path: Path, toy_steps) -> None:
    steps, calls = toy_steps
    storage = LocalFileSystem(basepath=str(tmp_path / "cache"))
    assert _run_chain(steps, InlineSteps(storage, "run-1"), "a" * 64).endswith("third")
    _run_chain(steps, InlineSteps(storage, "run-2"), "a" * 64)
    assert calls == {"first": 1, "second": 1, "third": 1}


def test_changed_step_recomputes_from_that_step_on(tmp_path: Path, toy_steps) -> None:
    steps, calls = toy_steps
    storage = LocalFileSystem(basepath=str(tmp_path / "cache"))
    _run_chain(steps, InlineSteps(storage, "run-1"), "b" * 64)
    spec = importlib.util.find_spec(steps[1].modules[0])
    assert spec is not None and spec.origin is not None
    Path(spec.origin).write_text("V = 'second, edited'\n")
    edited = [steps[0], Step(steps[1].name, steps[1].fn, modules=steps[1].modules), steps[2]]
    _run_chain(edited, InlineSteps(storage, "run-2"), "b" * 64)
    assert calls == {"first": 1, "second": 2, "third": 2}


def test_different_input_or_parameters_give_different_keys(toy_steps) -> None:
    steps, _ = toy_steps
    step = steps[0]
    assert step.key(["input-a"], {"dpi": 200}) != step.key(["input-b"], {"dpi": 200})
    assert step.key(["input-a"], {"dpi": 200}) != step.key(["input-a"], {"dpi": 300})
    assert step.key(["input-a"], {"dpi": 200}) == step.key(["input-a"], {"dpi": 200})


def test_rejection_becomes_a_cached_value_not_an_exception(tmp_path: Path) -> None:
    calls = []

    def refuse(value: str) -> str:
        calls.append(value)
        raise Rejection(RejectionCode.CORRUPT, "the file is cut short; export it again")

    step = Step("refuse", refuse, modules=(_module(tmp_path, "toy_refuse", "V = 1\n"),))
    storage = LocalFileSystem(basepath=str(tmp_path / "cache"))
    for run in ("run-1", "run-2"):
        with InlineSteps(storage, run) as steps:
            result = steps.run(step, [source_key("c" * 64)])
        assert isinstance(result.value, Rejected)
        assert result.value.error.code == "corrupt"
    assert len(calls) == 1


def test_after_a_step_computed_the_steps_downstream_skip_the_cache_lookup(
    tmp_path: Path, toy_steps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their keys chain from a key this run just made, so a lookup could only miss."""
    steps, _ = toy_steps
    storage = LocalFileSystem(basepath=str(tmp_path / "cache"))
    lookups: list[str] = []
    read = ResultStore.read

    def counted(self: ResultStore, key: str, holder: str | None = None) -> object:
        lookups.append(key)
        return read(self, key, holder)

    monkeypatch.setattr(ResultStore, "read", counted)
    _run_chain(steps, InlineSteps(storage, "run-1"), "f" * 64)
    assert [key.split("-")[0] for key in lookups] == ["first"]
    _run_chain(steps, InlineSteps(storage, "run-2"), "f" * 64)
    assert [key.split("-")[0] for key in lookups[1:]] == ["first", "second", "third"]


def test_without_storage_every_call_computes(tmp_path: Path, toy_steps) -> None:
    steps, calls = toy_steps
    _run_chain(steps, InlineSteps(None, "run-1"), "d" * 64)
    _run_chain(steps, InlineSteps(None, "run-2"), "d" * 64)
    assert calls["first"] == 2


def test_a_passing_io_error_is_retried_inside_a_batch(tmp_path: Path) -> None:
    attempts = []

    def flaky(value: str) -> str:
        attempts.append(value)
        if len(attempts) == 1:
            raise ConnectionResetError("storage hiccup")
        return value

    step = Step("flaky", flaky, modules=(_module(tmp_path, "toy_flaky", "V = 1\n"),))
    result = InlineSteps(None, "run-1").run(step, [source_key("e" * 64)])
    assert result.value == "e" * 64 and len(attempts) == 2


@pytest.mark.slow
def test_lineage_names_the_engine_that_read_the_pages_not_the_configured_one(
    tmp_path: Path,
) -> None:
    from mmflow.flows.invoice import process_invoice
    from mmflow.tasks.invoice import InvoiceOptions
    from mmflow.tasks.samples import SPECS, invoice_pdf, rasterise

    pdf = invoice_pdf(SPECS["northwind-invoice"])
    text_pdf, scan = tmp_path / "text.pdf", tmp_path / "scan.png"
    text_pdf.write_bytes(pdf)
    rasterise(pdf, dpi=150)[0].save(scan)
    engines = {}
    for path in (text_pdf, scan):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        result = process_invoice(
            str(path), sha, InlineSteps(None, "t"), InvoiceOptions(), "t"
        ).results[0]
        engines[path.name] = next(
            s["engine"] for s in result.lineage["steps"] if s["name"] == "read"
        )
    assert engines["text.pdf"].startswith("pymupdf ")
    assert engines["scan.png"].startswith("rapidocr ")


def test_a_version_is_computed_without_importing_the_modules_it_hashes(tmp_path: Path) -> None:
    """Versions read source files: importing every dependency to look for `DATA_FILES` loaded
    pandas and pandera into every command, about a second (docs/performance.md)."""
    name = _module(tmp_path, "toy_never_imported", "raise RuntimeError('imported')\n")
    step = Step("toy", lambda value: value, modules=(name,))
    assert len(step.version) == 16
    assert name not in sys.modules
