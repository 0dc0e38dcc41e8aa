"""What a PDF may make MuPDF do, judged before a page is read (docs/bad-inputs.md).

A PDF of a few hundred KB can declare 100,000 pages, hold streams that inflate to gigabytes
(a content stream of a billion drawing operators takes MuPDF half a minute and 1.6 GB; an object
stream is inflated again each time an object in it is read) or embed an image of 60,000 ×
60,000 pixels. MuPDF reads most of this lazily, so the bounds are checked here, from the page
tree's declared count, the object table and each stream's raw bytes, before validate decodes
anything:

- the page count the page tree declares (`/Count`), against `max_pages`;
- the number of objects, against `max_objects` (`too_complex`);
- what every stream that is not an image inflates to, counted by decompressing it in blocks and
  stopping at the bound: one stream against `max_stream_bytes`, all of them against
  `max_inflated_bytes` (`decompression_bomb`). Flate (also chained), LZW and RunLength are
  counted; image streams are not, since MuPDF reads from them only the bytes their declared
  size needs;
- every image's declared width × height, against `max_pixels` (`decompression_bomb`);
- what drawing each page means: its content streams plus, for every form it draws (`/Name Do`),
  what drawing that form means, recursively. Forms that each draw the next one ten times, nine
  deep, are a billion drawings in a few KB (MuPDF: two minutes and 4 GB for one page); the sum
  in bytes of content is held to `max_drawn_bytes` per page (`too_complex`).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import Protocol

from mmflow.tasks.errors import Rejection, RejectionCode
from mmflow.tasks.pdf_library import pymupdf

MB = 1024 * 1024
_BLOCK = 256 * 1024


class PdfBounds(Protocol):
    """The fields of `ValidationLimits` this module reads."""

    max_pages: int
    max_pixels: int
    max_objects: int
    max_stream_bytes: int
    max_inflated_bytes: int
    max_drawn_bytes: int


def check_pdf_budget(doc: pymupdf.Document, uri: str, limits: PdfBounds) -> None:
    """Raise `Rejection` when the PDF's declared structure is past a bound; cheap otherwise."""
    _check_declared_pages(doc, uri, limits)
    objects = doc.xref_length() - 1
    if objects > limits.max_objects:
        raise Rejection(
            RejectionCode.TOO_COMPLEX,
            f"{uri} holds {objects:,} objects; the limit is {limits.max_objects:,}. A document "
            "of a few pages needs far fewer: export or print it to a new PDF and submit that.",
        )
    inflated = 0
    for xref in _stream_xrefs(doc):
        if _key(doc, xref, "Subtype") == "/Image":
            _check_image(doc, xref, uri, limits)
            continue
        try:
            raw = doc.xref_stream_raw(xref) or b""
        except Exception:  # a stream MuPDF cannot read is one it will not inflate either
            continue
        size = decoded_size(
            _filters(doc, xref),
            raw,
            min(limits.max_stream_bytes, limits.max_inflated_bytes - inflated),
        )
        inflated += size
        if size > limits.max_stream_bytes or inflated > limits.max_inflated_bytes:
            what = (
                f"one stream (object {xref}) inflates past {limits.max_stream_bytes / MB:.0f} MB"
                if size > limits.max_stream_bytes
                else f"its streams inflate past {limits.max_inflated_bytes / MB:.0f} MB in all"
            )
            raise Rejection(
                RejectionCode.DECOMPRESSION_BOMB,
                f"{uri}: {what}; a document of a few pages needs far less, so it was not read. "
                "Export or print it to a new PDF and submit that.",
            )
    _check_drawing(doc, uri, limits)


def _check_declared_pages(doc: pymupdf.Document, uri: str, limits: PdfBounds) -> None:
    """The page tree's `/Count`, read without loading it: MuPDF refuses a tree whose count
    disagrees with its pages ("Invalid number of pages"), which says nothing to a person."""
    try:
        kind, pages_ref = _entry(doc, doc.pdf_catalog(), "Pages")
        if kind != "xref":
            return
        kind, count = _entry(doc, int(pages_ref.split()[0]), "Count")
    except (RuntimeError, ValueError, IndexError):
        return  # no readable page tree: validate's page count judges the damage
    if kind == "int" and int(count) > limits.max_pages:
        raise Rejection(
            RejectionCode.TOO_MANY_PAGES,
            f"{uri} declares {int(count):,} pages; the limit is {limits.max_pages}. Split it "
            "into separate invoices (or raise max_pages) and submit again.",
        )


def _stream_xrefs(doc: pymupdf.Document) -> Iterator[int]:
    """Objects that are streams. Objects stored inside object streams cannot be streams, and
    asking MuPDF about them would inflate their object stream first, so they are skipped."""
    pdf = pymupdf._as_pdf_document(doc)
    for xref in range(1, doc.xref_length()):
        entry = pymupdf.mupdf.ll_pdf_get_xref_entry_no_null(pdf.m_internal, xref)
        try:
            is_stream = entry.type == "n" and doc.xref_is_stream(xref)
        except Exception:  # an object MuPDF cannot read is not a stream it will inflate
            continue
        if is_stream:
            yield xref


def _key(doc: pymupdf.Document, xref: int, name: str) -> str:
    return _entry(doc, xref, name)[1]


def _entry(doc: pymupdf.Document, xref: int, name: str) -> tuple[str, str]:
    """(kind, value) of a key; ("null", "") for an object MuPDF cannot read (its errors are
    several exception types), since such an object holds nothing this module counts."""
    try:
        kind, value = doc.xref_get_key(xref, name)
    except Exception:
        return "null", ""
    return str(kind), str(value)


def _filters(doc: pymupdf.Document, xref: int) -> list[str]:
    return re.findall(r"/([A-Za-z0-9]+)", _key(doc, xref, "Filter"))


def _check_image(doc: pymupdf.Document, xref: int, uri: str, limits: PdfBounds) -> None:
    try:
        width, height = int(_key(doc, xref, "Width")), int(_key(doc, xref, "Height"))
    except ValueError:
        return  # an image without a usable size does not decode; the page probe judges it
    if width * height > limits.max_pixels:
        raise Rejection(
            RejectionCode.DECOMPRESSION_BOMB,
            f"{uri} embeds an image of {width:,}×{height:,} = {width * height / 1e6:,.0f} "
            f"megapixels (limit {limits.max_pixels / 1e6:.0f}); it was not decoded. Rescan or "
            "export at 200-300 dpi and submit again.",
        )


# ---------------------------------------------------------------- counting what filters make

_FLATE = {"FlateDecode", "Fl"}
_LZW = {"LZWDecode", "LZW"}
_RUN_LENGTH = {"RunLengthDecode", "RL"}


def decoded_size(filters: list[str], raw: bytes, limit: int) -> int:
    """Bytes `raw` decodes to through its leading Flate, LZW or RunLength filters, counted up
    to just past `limit` (a bomb is never inflated further than that). Damaged data counts
    what decoded before the damage; a filter not counted here ends the count."""
    blocks: Iterator[bytes] = iter([raw])
    stages = 0
    for name in filters:
        if name not in _FLATE:
            break
        blocks = _inflate(blocks)
        stages += 1
    rest = filters[stages:]
    if rest and rest[0] in _LZW | _RUN_LENGTH:
        data = b"".join(_take(blocks, limit + 1))
        counter = _lzw_size if rest[0] in _LZW else _run_length_size
        return counter(data, limit)
    return sum(len(block) for block in _take(blocks, limit + 1))


def _take(blocks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    total = 0
    for block in blocks:
        yield block
        total += len(block)
        if total >= limit:
            return


def _inflate(blocks: Iterator[bytes]) -> Iterator[bytes]:
    inflater = zlib.decompressobj()
    try:
        for block in blocks:
            pending = block
            while pending and not inflater.eof:
                out = inflater.decompress(pending, _BLOCK)
                if out:
                    yield out
                pending = inflater.unconsumed_tail
            if inflater.eof:
                return
    except zlib.error:
        return


def _run_length_size(data: bytes, limit: int) -> int:
    size, at = 0, 0
    while at < len(data) and size <= limit:
        length = data[at]
        if length == 128:
            break
        if length < 128:
            size += length + 1
            at += length + 2
        else:
            size += 257 - length
            at += 2
    return size


def _lzw_size(data: bytes, limit: int) -> int:
    """Length of PDF LZW output (early change, 9-12 bit codes), without building it."""
    lengths: list[int] = [1] * 256 + [0, 0]  # 256 clear, 257 end of data
    size, previous, width, buffer, bits = 0, -1, 9, 0, 0
    for byte in data:
        buffer, bits = (buffer << 8) | byte, bits + 8
        while bits >= width:
            bits -= width
            code = (buffer >> bits) & ((1 << width) - 1)
            if code == 256:
                lengths, previous, width = lengths[:258], -1, 9
                continue
            if code == 257:
                return size
            if code < len(lengths):
                length = lengths[code]
            elif code == len(lengths) and previous >= 0:
                length = lengths[previous] + 1
            else:
                return size  # a code that cannot occur: damaged data
            if previous >= 0 and len(lengths) < 4096:
                lengths.append(lengths[previous] + 1)
            previous = code
            size += length
            if size > limit:
                return size
            if len(lengths) + 1 >= (1 << width) and width < 12:
                width += 1
    return size


# ---------------------------------------------------------------- what drawing a page means

_DO = re.compile(rb"/([^\s/\[\]<>(){}%]+)\s*Do\b")
_REFERENCE = re.compile(r"/([^\s/\[\]<>(){}%]+)\s+(\d+)\s+\d+\s+R")


def _check_drawing(doc: pymupdf.Document, uri: str, limits: PdfBounds) -> None:
    """Every page's drawing cost against `max_drawn_bytes` (streams are known small by now)."""
    costs: dict[int, int] = {}
    for xref in range(1, doc.xref_length()):
        if _key(doc, xref, "Type") != "/Page":
            continue
        contents = [int(n) for n in re.findall(r"(\d+)\s+\d+\s+R", _key(doc, xref, "Contents"))]
        forms = _xobjects(doc, xref, inherited=True)
        cost = sum(_drawn(doc, c, forms, costs, limits.max_drawn_bytes) for c in contents)
        if cost > limits.max_drawn_bytes:
            raise Rejection(
                RejectionCode.TOO_COMPLEX,
                f"{uri}: drawing one of its pages means interpreting over "
                f"{limits.max_drawn_bytes / MB:.0f} MB of drawing instructions (forms drawing "
                "forms); it was not rendered. Export or print it to a new PDF and submit that.",
            )


def _xobjects(doc: pymupdf.Document, xref: int, inherited: bool = False) -> dict[str, int]:
    """Name → object of the XObjects a page (with what it inherits) or a form may draw."""
    for _ in range(32 if inherited else 1):
        kind, value = _entry(doc, xref, "Resources/XObject")
        if kind == "xref":
            try:
                value = doc.xref_object(int(value.split()[0]), compressed=True)
            except Exception:
                return {}
        if kind in ("dict", "xref"):
            return {name: int(number) for name, number in _REFERENCE.findall(value)}
        kind, parent = _entry(doc, xref, "Parent")
        if kind != "xref":
            break
        xref = int(parent.split()[0])
    return {}


_MAX_FORM_DEPTH = 64  # forms inside forms deeper than this are past any real document


def _drawn(
    doc: pymupdf.Document,
    xref: int,
    forms: dict[str, int],
    costs: dict[int, int],
    cap: int,
    depth: int = 0,
) -> int:
    """Bytes of drawing instructions interpreted to draw stream `xref`, forms included; a form
    already on the way (a cycle MuPDF refuses to follow) counts nothing. Stops past `cap`."""
    if xref in costs:
        return costs[xref]
    if depth > _MAX_FORM_DEPTH:
        return cap + 1
    costs[xref] = 0  # on the way: a cycle ends here
    try:
        content = doc.xref_stream(xref) or b""
    except Exception:  # MuPDF will not draw what it cannot decode
        content = b""
    total = len(content)
    for name in _DO.findall(content):
        target = forms.get(name.decode("latin-1"))
        if target is None or _key(doc, target, "Subtype") != "/Form":
            continue
        total += _drawn(doc, target, _xobjects(doc, target), costs, cap, depth + 1)
        if total > cap:
            break
    costs[xref] = total
    return total
