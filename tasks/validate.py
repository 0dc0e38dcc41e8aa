"""Validate: decide from the bytes alone whether an input is a document this flow can read.

The type comes from magic numbers, never from the file name, and is confirmed by opening the
file with the decoder that will read it later (PyMuPDF for PDF, Pillow for raster images, with
Pillow restricted to the formats listed in RASTER_FORMATS). Every limit is checked before the
expensive step it protects: byte size before parsing, declared pixel count before decoding,
page count before touching pages. Then the whole content is decoded once, so a truncated or
corrupt file is rejected here instead of failing halfway through OCR.

What counts as a corrupt PDF: it cannot be opened, it has no pages, a page cannot be loaded or
rendered, or MuPDF had to rebuild its cross-reference table (`doc.is_repaired`) AND then
reported problems while decoding the pages (missing content streams, broken images: the file
was cut off). A repaired PDF whose pages all decode cleanly is accepted with the flag
`pdf_repaired`; sloppy writers produce many of those and the pages are intact.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel
from pydantic.json_schema import SkipJsonSchema

from mmflow.tasks.errors import Rejection, RejectionCode
from mmflow.tasks.models import ValidatedInput
from mmflow.tasks.pdf_budget import check_pdf_budget
from mmflow.tasks.pdf_library import pymupdf

MB = 1024 * 1024

# Pillow format name → media type. Only these plugins are ever asked to parse input bytes.
RASTER_FORMATS: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # phone cameras' multi-picture JPEG; the first picture is the photo
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}
PILLOW_PLUGINS = ["PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP"]  # MPO opens via JPEG
PDF_MEDIA_TYPE = "application/pdf"

FLAG_PDF_JAVASCRIPT = "pdf_javascript"
FLAG_PDF_EMBEDDED_FILES = "pdf_embedded_files"
FLAG_PDF_LAUNCH_ACTION = "pdf_launch_action"
FLAG_PDF_REPAIRED = "pdf_repaired"
FLAG_PDF_DECODE_WARNINGS = "pdf_decode_warnings"
FLAG_PDF_OWNER_PASSWORD = "pdf_owner_password"
FLAG_ANIMATED_IMAGE = "animated_image_first_frame_only"


class ValidationLimits(BaseModel):
    """Limits applied before any expensive work; defaults suit invoices, receipts and scans."""

    max_bytes: int = 50 * MB
    # Pillow's own default bomb threshold (~89.5 MP): an A4 page at 600 dpi is 35 MP.
    max_pixels: int = 89_478_485
    max_pages: int = 50
    min_side_px: int = 32  # raster pixels, or PDF points for PDF pages
    max_side_px: int = 20_000  # a 1 m long receipt scanned at 300 dpi is ~11,800 px
    # PDF pages must render within max_pixels at this resolution; set from the scenario's dpi.
    render_dpi: SkipJsonSchema[int] = 200
    # What a PDF may make the decoder do (tasks/pdf_budget.py): a 50-page invoice PDF holds a
    # few thousand objects and inflates to a few MB.
    max_objects: int = 250_000
    max_stream_bytes: int = 64 * MB  # inflated size of one stream that is not an image
    max_inflated_bytes: int = 256 * MB  # ... and of all of them together
    max_drawn_bytes: int = 128 * MB  # drawing instructions per page, forms drawn included


DEFAULT_LIMITS = ValidationLimits()


def validate_bytes(
    data: bytes, uri: str, limits: ValidationLimits = DEFAULT_LIMITS
) -> ValidatedInput:
    """Accept a PDF or supported raster image, or raise `Rejection` with an actionable message.

    Never raises anything else for bad input: decoder failures become `corrupt`.
    """
    if not data:
        raise Rejection(
            RejectionCode.EMPTY,
            f"{uri} is empty (0 bytes); the upload or copy probably failed. Send the file again.",
        )
    if len(data) > limits.max_bytes:
        raise Rejection(
            RejectionCode.TOO_LARGE,
            f"{uri} is {len(data) / MB:.1f} MB; the limit is {limits.max_bytes / MB:.0f} MB. "
            "Split the PDF into separate invoices, or scan at 200-300 dpi (enough for OCR), "
            "and submit again.",
        )
    kind = sniff(data)
    if kind.media_type == PDF_MEDIA_TYPE:
        pages, flags = _check_pdf(data, uri, limits)
    elif kind.media_type is not None:
        pages, flags, media_type = _check_raster(data, uri, limits)
        kind = Sniffed(media_type, kind.description)
    else:
        raise Rejection(
            RejectionCode.UNSUPPORTED_FORMAT,
            f"{uri} is {kind.description}, not a PDF or image; {kind.advice}",
        )
    assert kind.media_type is not None
    return ValidatedInput(
        uri=uri,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        media_type=kind.media_type,
        pages=pages,
        flags=flags,
    )


# ---------------------------------------------------------------- sniffing


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes say; `media_type` is None for types this flow does not read."""

    media_type: str | None
    description: str
    advice: str = ""


# BITMAPINFOHEADER sizes, so a text file starting "BM..." is not taken for a bitmap
_BMP_INFO_HEADER_SIZES = {n.to_bytes(4, "little") for n in (12, 16, 40, 52, 56, 64, 108, 124)}
_TEXT = "plain text"
_BINARY_PREFIX = "an unrecognised binary file"
_EXPORT_PDF = "export or print it to PDF and submit that."
_SUBMIT_DOCS = "unpack it and submit the documents inside."


def sniff(data: bytes) -> Sniffed:
    """Identify the type from magic numbers; a name like `invoice.pdf` proves nothing."""
    head = data[:1024]
    if head.startswith(b"%PDF-"):
        return Sniffed(PDF_MEDIA_TYPE, "a PDF document")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image/png", "a PNG image")
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image/jpeg", "a JPEG image")
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return Sniffed("image/tiff", "a TIFF image")
    if head.startswith(b"BM") and head[14:18] in _BMP_INFO_HEADER_SIZES:
        return Sniffed("image/bmp", "a BMP image")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Sniffed("image/gif", "a GIF image")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Sniffed("image/webp", "a WebP image")
    other = _describe_unsupported(data)
    # The PDF spec tolerates junk before the header, but a ZIP or HTML file that merely
    # contains "%PDF-" (a PDF inside an archive) is still a ZIP or HTML file.
    if b"%PDF-" in head and other.description in (_TEXT, _BINARY_PREFIX):
        return Sniffed(PDF_MEDIA_TYPE, "a PDF document")
    return other


def _describe_unsupported(data: bytes) -> Sniffed:
    head = data[:1024]
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _describe_zip(data)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return Sniffed(None, "a legacy Microsoft Office file (DOC, XLS or MSG)", _EXPORT_PDF)
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"heif", b"avif"):
            return Sniffed(
                None,
                "a HEIC/AVIF photo (the iPhone default)",
                "set the camera to 'Most Compatible' or export the photo as JPEG, then submit it.",
            )
        return Sniffed(None, "an MP4/QuickTime media file", "submit the document itself.")
    archives = {
        b"\x1f\x8b": "a gzip archive",
        b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
        b"Rar!\x1a\x07": "a RAR archive",
        b"BZh": "a bzip2 archive",
        b"\xfd7zXZ\x00": "an XZ archive",
    }
    for magic, name in archives.items():
        if head.startswith(magic):
            return Sniffed(None, name, _SUBMIT_DOCS)
    if len(data) > 262 and data[257:262] == b"ustar":
        return Sniffed(None, "a TAR archive", _SUBMIT_DOCS)
    if head.startswith((b"\x7fELF", b"MZ")):
        return Sniffed(None, "an executable program", "submit the invoice document instead.")
    if head.startswith(b"%!PS"):
        return Sniffed(None, "a PostScript file", "convert it to PDF (ps2pdf) and submit that.")
    if head.startswith(b"{\\rtf"):
        return Sniffed(None, "an RTF document", _EXPORT_PDF)
    text = _as_text(head)
    if text is not None:
        lowered = text.lstrip().lower()
        if lowered.startswith(("<!doctype html", "<html")) or "<html" in lowered[:512]:
            return Sniffed(
                None,
                "an HTML web page (often a login or error page saved instead of the download)",
                "open it in a browser and download the real PDF, or print the page to PDF.",
            )
        if "<svg" in lowered[:512]:
            return Sniffed(None, "an SVG drawing", "export it as PNG or PDF and submit that.")
        if lowered.startswith("<?xml"):
            return Sniffed(
                None,
                "an XML document (possibly a structured e-invoice such as UBL or CII)",
                "submit its PDF rendering, or process the XML with an e-invoice reader.",
            )
        return Sniffed(None, _TEXT, "if it is an invoice, " + _EXPORT_PDF)
    return Sniffed(
        None,
        _BINARY_PREFIX,
        f"it starts with bytes {head[:8].hex(' ')}; submit a PDF, PNG, JPEG, TIFF, BMP, GIF "
        "or WebP file.",
    )


def _describe_zip(data: bytes) -> Sniffed:
    """Office files are ZIPs; name the application so the advice is concrete."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()[:2000]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return Sniffed(
            None, "a damaged ZIP archive", "re-create the archive, or submit the documents inside."
        )
    if any(n.startswith("word/") for n in names):
        return Sniffed(None, "a Word document (DOCX)", _EXPORT_PDF)
    if any(n.startswith("xl/") for n in names):
        return Sniffed(None, "an Excel workbook (XLSX)", _EXPORT_PDF)
    if any(n.startswith("ppt/") for n in names):
        return Sniffed(None, "a PowerPoint presentation (PPTX)", _EXPORT_PDF)
    if "mimetype" in names or "content.xml" in names:
        return Sniffed(None, "an OpenDocument file (ODT/ODS)", _EXPORT_PDF)
    return Sniffed(None, "a ZIP archive", _SUBMIT_DOCS)


def _as_text(head: bytes) -> str | None:
    """The start of the file as text, if it reads as mostly printable UTF-8 or UTF-16."""
    for encoding in ("utf-8-sig", "utf-16"):
        if encoding == "utf-16" and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
            continue
        try:
            text = head.decode(encoding, errors="strict")
        except UnicodeDecodeError:
            # A multi-byte character cut at the 1 KB boundary is still text.
            try:
                text = head[:-4].decode(encoding, errors="strict")
            except UnicodeDecodeError:
                continue
        printable = sum(ch.isprintable() or ch in "\r\n\t\f" for ch in text)
        if text and printable / len(text) > 0.95:
            return text
    return None


# ---------------------------------------------------------------- PDF

_JAVASCRIPT = re.compile(r"/(JS|JavaScript)(?![A-Za-z0-9])")
_EMBEDDED = re.compile(r"/(EmbeddedFile|EmbeddedFiles|FileAttachment)(?![A-Za-z0-9])")
_LAUNCH = re.compile(r"/Launch(?![A-Za-z0-9])")
_PROBE_ZOOM = pymupdf.Matrix(0.125, 0.125)  # 9 dpi: decodes everything, costs ~1 ms a page


def _corrupt_pdf(uri: str, detail: str) -> Rejection:
    return Rejection(
        RejectionCode.CORRUPT,
        f"{uri} is a damaged PDF ({detail}). It was probably cut off during download or copy; "
        "fetch or export the original again and resubmit.",
    )


def _check_pdf(data: bytes, uri: str, limits: ValidationLimits) -> tuple[int, list[str]]:
    """Open, check limits, then decode every page once; returns (pages, flags)."""
    pymupdf.TOOLS.mupdf_display_errors(False)  # MuPDF's warnings are read below, not printed
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # any MuPDF failure on hostile bytes means the file is unusable
        raise _corrupt_pdf(uri, f"MuPDF cannot open it: {exc}") from exc
    with doc:
        if doc.needs_pass:
            raise Rejection(
                RejectionCode.ENCRYPTED_PDF,
                f"{uri} is password-protected. Open it with its password and save an "
                "unprotected copy (Print → Save as PDF), then submit that copy.",
            )
        flags: list[str] = []
        if (doc.metadata or {}).get("encryption"):  # opened without a password: owner-only
            flags.append(FLAG_PDF_OWNER_PASSWORD)
        try:
            check_pdf_budget(doc, uri, limits)
            pages = doc.page_count
        except Rejection:
            raise
        except Exception as exc:  # a page tree MuPDF refuses (its count disagrees, a cycle)
            raise _corrupt_pdf(uri, f"its page tree cannot be read: {exc}") from exc
        if pages == 0:
            raise _corrupt_pdf(uri, "no readable pages")
        if pages > limits.max_pages:
            raise Rejection(
                RejectionCode.TOO_MANY_PAGES,
                f"{uri} has {pages} pages; the limit is {limits.max_pages}. Split it into "
                "separate invoices (or raise max_pages) and submit again.",
            )
        flags += _active_content_flags(doc)
        if doc.is_repaired:
            flags.append(FLAG_PDF_REPAIRED)
        pymupdf.TOOLS.reset_mupdf_warnings()
        for index in range(pages):
            _check_pdf_page(doc, index, uri, limits)
        warnings = pymupdf.TOOLS.mupdf_warnings().strip()
        if warnings and doc.is_repaired:
            first = warnings.splitlines()[0]
            raise _corrupt_pdf(uri, f"its structure had to be rebuilt and then: {first}")
        if warnings:
            flags.append(FLAG_PDF_DECODE_WARNINGS)
    return pages, flags


def _check_pdf_page(doc: pymupdf.Document, index: int, uri: str, limits: ValidationLimits) -> None:
    """Sizes first (a huge page must not be rendered even as a probe), then a full decode."""
    try:
        page = doc.load_page(index)
        rect = page.rect
    except Exception as exc:  # a page MuPDF cannot load is a damaged page
        raise _corrupt_pdf(uri, f"page {index + 1} cannot be loaded: {exc}") from exc
    if min(rect.width, rect.height) < limits.min_side_px:
        raise Rejection(
            RejectionCode.TOO_SMALL,
            f"{uri} page {index + 1} is only {rect.width:.0f}×{rect.height:.0f} points "
            f"(under {limits.min_side_px}); submit the full-size document.",
        )
    scale = limits.render_dpi / 72
    pixels = rect.width * scale * rect.height * scale
    if pixels > limits.max_pixels:
        raise Rejection(
            RejectionCode.DECOMPRESSION_BOMB,
            f"{uri} page {index + 1} measures {rect.width / 72:.0f}×{rect.height / 72:.0f} "
            f"inches; rendering it at {limits.render_dpi} dpi needs {pixels / 1e6:.0f} "
            f"megapixels (limit {limits.max_pixels / 1e6:.0f}). Resize the page to its real "
            "paper size and submit again.",
        )
    try:
        for xref in page.get_contents():
            if not doc.xref_is_stream(xref):
                raise ValueError(f"content stream {xref} is missing")
        page.get_pixmap(matrix=_PROBE_ZOOM, alpha=False)
    except Exception as exc:  # content MuPDF cannot interpret means a damaged page
        raise _corrupt_pdf(uri, f"page {index + 1} cannot be read: {exc}") from exc


def _active_content_flags(doc: pymupdf.Document) -> list[str]:
    """Scan every object's dictionary (not streams) for scripts, attachments, launch actions."""
    found: set[str] = set()
    if doc.embfile_count() > 0:
        found.add(FLAG_PDF_EMBEDDED_FILES)
    for xref in range(1, doc.xref_length()):
        try:
            source = doc.xref_object(xref, compressed=True)
        except Exception:  # a broken object holds no action; page decoding judges the damage
            continue
        if _JAVASCRIPT.search(source):
            found.add(FLAG_PDF_JAVASCRIPT)
        if _EMBEDDED.search(source):
            found.add(FLAG_PDF_EMBEDDED_FILES)
        if _LAUNCH.search(source):
            found.add(FLAG_PDF_LAUNCH_ACTION)
    return sorted(found)


# ---------------------------------------------------------------- raster images


def _corrupt_image(uri: str, description: str, detail: str) -> Rejection:
    return Rejection(
        RejectionCode.CORRUPT,
        f"{uri} starts like {description} but cannot be decoded ({detail}). It was probably "
        "cut off or damaged in transfer; send the original file again.",
    )


def _check_raster(data: bytes, uri: str, limits: ValidationLimits) -> tuple[int, list[str], str]:
    """Count pages, check each frame's declared size, then decode every frame fully."""
    description = sniff(data).description
    try:
        image = Image.open(io.BytesIO(data), formats=PILLOW_PLUGINS)
    except Image.DecompressionBombError as exc:  # beyond Pillow's own hard limit
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        detail = f"{int(declared[1]) / 1e6:,.0f} megapixels" if declared else "too many pixels"
        raise _bomb(uri, detail, limits) from exc
    except UnidentifiedImageError as exc:
        raise _corrupt_image(uri, description, "its header is not a valid image header") from exc
    except Exception as exc:  # hostile headers make Pillow raise many exception types
        raise _text_bomb(uri, exc, limits) or _corrupt_image(
            uri, description, f"header unreadable: {exc}"
        ) from exc
    with image:
        media_type = RASTER_FORMATS.get(image.format or "", "")
        if not media_type:
            raise _corrupt_image(uri, description, f"decoded as {image.format}")
        flags: list[str] = []
        if image.format == "TIFF":
            pages = _count_tiff_pages(image, uri, description, limits)
        else:
            pages = 1  # GIF/WebP animations and MPO previews: the first frame is the page
            if getattr(image, "is_animated", False):
                flags.append(FLAG_ANIMATED_IMAGE)
        for index in range(pages):
            try:
                image.seek(index)
            except Exception as exc:
                raise _corrupt_image(uri, description, f"page {index + 1}: {exc}") from exc
            _check_frame_size(image, uri, index, limits)
            try:
                image.load()
            except Exception as exc:  # truncated or corrupt data: Pillow raises many types
                raise _text_bomb(uri, exc, limits) or _corrupt_image(
                    uri, description, f"page {index + 1}: {exc}"
                ) from exc
    return pages, flags, media_type


def _count_tiff_pages(
    image: Image.Image, uri: str, description: str, limits: ValidationLimits
) -> int:
    """Walk the TIFF's directory chain (headers only), stopping one past the page limit."""
    pages = 1
    while True:
        try:
            image.seek(pages)
        except EOFError:
            return pages
        except Exception as exc:
            raise _corrupt_image(uri, description, f"page {pages + 1}: {exc}") from exc
        pages += 1
        if pages > limits.max_pages:
            raise Rejection(
                RejectionCode.TOO_MANY_PAGES,
                f"{uri} has more than {limits.max_pages} pages; split it into separate "
                "invoices (or raise max_pages) and submit again.",
            )


def _check_frame_size(image: Image.Image, uri: str, index: int, limits: ValidationLimits) -> None:
    width, height = image.size
    where = f"{uri} (page {index + 1})" if index else uri
    if width * height > limits.max_pixels:
        raise _bomb(uri, f"{width}×{height} = {width * height / 1e6:.0f} megapixels", limits)
    if max(width, height) > limits.max_side_px:
        raise Rejection(
            RejectionCode.TOO_LARGE,
            f"{where} is {width}×{height} pixels; the longest side may be at most "
            f"{limits.max_side_px}. Downscale it (300 dpi is plenty for OCR) and submit again.",
        )
    if min(width, height) < limits.min_side_px:
        raise Rejection(
            RejectionCode.TOO_SMALL,
            f"{where} is only {width}×{height} pixels; a readable page needs at least "
            f"{limits.min_side_px} pixels on each side. Submit the original scan or photo, "
            "not a thumbnail.",
        )


def _text_bomb(uri: str, error: Exception, limits: ValidationLimits) -> Rejection | None:
    """Pillow refuses a text or colour-profile chunk that inflates past its limits (PNG zTXt,
    iTXt, iCCP): a decompression bomb, not a damaged file."""
    if isinstance(error, ValueError) and "decompressed data too large" in str(error).lower():
        return _bomb(uri, "a metadata chunk that inflates past Pillow's limit", limits)
    return None


def _bomb(uri: str, detail: str, limits: ValidationLimits) -> Rejection:
    return Rejection(
        RejectionCode.DECOMPRESSION_BOMB,
        f"{uri} declares an image of {detail}; the limit is "
        f"{limits.max_pixels / 1e6:.0f} megapixels, so it was not decoded (a decompression "
        "bomb, or a scan at far too high a resolution). Rescan or downscale to 200-300 dpi "
        "(an A4 page at 300 dpi is 2480×3508 pixels) and submit again.",
    )
