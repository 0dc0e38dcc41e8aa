"""A batch's input folder as the batch and fault tests use it: distinct invoices plus the
cases a batch must plan around (the same bytes under a second name, a non-invoice, an empty
file)."""

from __future__ import annotations

from pathlib import Path

from mmflow.tasks.samples import numbered_invoices


def batch_inbox(path: Path, documents: int) -> Path:
    """`documents` distinct invoices, a copy of the first under another name, and two bad files."""
    path.mkdir(parents=True)
    for name, data in numbered_invoices(documents):
        (path / name).write_bytes(data)
    (path / "zz-copy.pdf").write_bytes((path / "invoice-10000.pdf").read_bytes())
    (path / "notes.txt").write_text("not an invoice", encoding="utf-8")
    (path / "empty.pdf").write_bytes(b"")
    return path
