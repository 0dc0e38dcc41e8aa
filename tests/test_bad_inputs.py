"""The hostile corpus (issue 9 item 14, issue 15): every case ends in its typed rejection or a
result, within the per-input memory and time bounds docs/bad-inputs.md states.

Each case runs in its own child process (tests/bad_input_child.py) through the steps the flows
run first, under an address-space limit so a regression fails here instead of taking the
machine; the child reports its outcome, seconds and peak resident memory. The measured table is
printed by benchmarks/bad_inputs.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmflow.tasks.inputs import carried_name
from tests.bad_input_child import run_in_child
from tests.badinputs import AUDIO, DOCUMENT, HostileCase, cases_table, hostile_cases

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("ffmpeg") and shutil.which("espeak-ng") and shutil.which("sox")),
        reason="needs ffmpeg, espeak-ng and sox",
    ),
]

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bad-inputs.md"
# The bounds docs/bad-inputs.md documents: growth of a process's peak resident memory over
# what it held before the steps, and wall time, for one input through validate and normalise.
PEAK_GROWTH_MB = {DOCUMENT: 512, AUDIO: 256}
SECONDS = {DOCUMENT: 30, AUDIO: 30}
CASES = hostile_cases()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile") / "in"
    folder.mkdir()
    return {case.name: case.make(folder) for case in CASES}


def test_the_corpus_has_at_least_45_kinds_of_bad_input() -> None:
    bad = [c for c in CASES if not c.what.startswith("control")]
    assert len(bad) >= 45 and len({c.name for c in CASES}) == len(CASES)
    assert {c.pipeline for c in bad} == {DOCUMENT, AUDIO}


@pytest.mark.parametrize(
    "case", CASES, ids=[c.name.encode("unicode_escape").decode() for c in CASES]
)
def test_each_case_ends_as_documented_within_the_bounds(
    case: HostileCase, corpus: dict[str, Path]
) -> None:
    uri = carried_name(str(corpus[case.name]))
    report = run_in_child(case.pipeline, uri, timeout_s=5 * SECONDS[case.pipeline])
    assert report["outcome"] == case.expected, report
    growth = float(report["peak_mb"]) - float(report["base_mb"])
    assert growth <= PEAK_GROWTH_MB[case.pipeline], report
    assert float(report["seconds"]) <= SECONDS[case.pipeline], report


def test_docs_list_every_case_with_its_code() -> None:
    """docs/bad-inputs.md holds the table this corpus makes (regenerate: see the doc)."""
    text = DOC.read_text()
    begin, end = "<!-- cases:begin -->\n", "<!-- cases:end -->"
    table = text[text.index(begin) + len(begin) : text.index(end)]
    assert table == cases_table(CASES)


def test_docs_state_the_bounds_this_test_enforces() -> None:
    text = DOC.read_text()
    for pipeline, flow in ((DOCUMENT, "invoice"), (AUDIO, "meeting")):
        assert f"| {flow} | {PEAK_GROWTH_MB[pipeline]} MB | {SECONDS[pipeline]} s |" in text
