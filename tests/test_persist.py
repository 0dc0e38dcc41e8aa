"""Output contracts: one manifest line per input, unique `<stem>.json` names."""

from __future__ import annotations

from pathlib import Path

from mmflow.tasks.models import ErrorInfo, ManifestEntry, Status
from mmflow.tasks.persist import Manifest, OutputNames


def test_manifest_compaction_keeps_one_line_per_input_latest_wins(tmp_path: Path) -> None:
    manifest = Manifest(str(tmp_path))
    manifest.append(ManifestEntry(uri="a.pdf", sha256="1", status=Status.FAILED))
    manifest.append(ManifestEntry(uri="b.pdf", sha256="2", status=Status.OK, output="b.json"))
    manifest.append(ManifestEntry(uri="a.pdf", sha256="1", status=Status.OK, output="a.json"))
    entries = manifest.compact(order=["a.pdf", "b.pdf"])
    assert [(e.uri, e.status) for e in entries] == [("a.pdf", "ok"), ("b.pdf", "ok")]
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 2


def test_manifest_survives_a_line_cut_short_by_a_crash(tmp_path: Path) -> None:
    manifest = Manifest(str(tmp_path))
    manifest.append(
        ManifestEntry(
            uri="x.pdf",
            sha256=None,
            status=Status.REJECTED,
            error=ErrorInfo(code="empty", message="the file is empty"),
        )
    )
    with open(tmp_path / "manifest.jsonl", "a") as handle:
        handle.write('{"uri": "y.pdf", "sha2')
    assert [e.uri for e in manifest.read()] == ["x.pdf"]


def test_same_stem_from_two_folders_gets_distinct_names() -> None:
    names = OutputNames()
    assert names.stem_for("a/invoice.pdf", "ab" * 32) == "invoice"
    assert names.stem_for("b/invoice.pdf", "cd" * 32) == "invoice-cdcdcdcd"
    assert names.stem_for("a/invoice.pdf", "ab" * 32) == "invoice"
