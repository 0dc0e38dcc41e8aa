"""Crafted text-layer PDFs that cost a naive reader minutes of CPU for one page.

Used by the bound test and benchmarks/extract_bounds.py: a page whose text layer is one line of
tens of thousands of number tokens, and one whose single row holds tens of thousands of
separate text objects. Both fit on one (very wide) page, so a reader sees every word. The
content stream is written directly: drawing that much text through a text writer takes longer
than reading it.
"""

from __future__ import annotations

from mmflow.tasks.pdf_library import pymupdf

WIDE_PAGE = (14000.0, 842.0)  # points; PDF allows up to 14,400


def _page_with_stream(content: str) -> bytes:
    """A wide page whose content stream is `content`, with Helvetica as font `/helv`."""
    doc = pymupdf.open()
    page = doc.new_page(width=WIDE_PAGE[0], height=WIDE_PAGE[1])
    page.insert_text((10, 100), "x", fontname="helv", fontsize=1)  # registers /helv
    doc.update_stream(page.get_contents()[0], content.encode("latin-1"))
    data = doc.tobytes(deflate=True)
    doc.close()
    return data


def numbers_line_pdf(tokens: int = 30000) -> bytes:
    """One text line of `tokens` money-like numbers ("12.34 56.07 …")."""
    text = " ".join(f"{i % 97}.{i % 89:02d}" for i in range(tokens))
    return _page_with_stream(f"BT /helv 0.12 Tf 10 742 Td ({text}) Tj ET")


def segments_row_pdf(segments: int = 28000) -> bytes:
    """One row of `segments` separate text objects ("ab"), evenly spaced along the line."""
    step = (WIDE_PAGE[0] - 20) / segments
    objects = "\n".join(
        f"BT /helv 0.2 Tf {10 + i * step:.2f} 742 Td (ab) Tj ET" for i in range(segments)
    )
    return _page_with_stream(objects)
