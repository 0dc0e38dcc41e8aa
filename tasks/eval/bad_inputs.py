"""The bad-input corpus: one file per way an input can be unusable, with the outcome it must
end with, plus two controls that must be accepted.

`build_bad_corpus` returns `{file name: expected outcome}`, where the outcome is a rejection
code (`RejectionCode` value), `"ok"` for an accepted file, or `"flag:<name>"` for a file that
is accepted and carries that flag. Files are built here, cheaply and deterministically; nothing
is downloaded. The validate and flow tests use it (tests/badinputs.py adds the hostile corpus),
and so does the stress tier of the evaluation, which runs it through the invoice flow.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zipfile
import zlib
from pathlib import Path

import pymupdf
from PIL import Image

from mmflow.tasks.errors import RejectionCode
from mmflow.tasks.samples import SPECS, invoice_pdf, rasterise
from mmflow.tasks.validate import FLAG_PDF_EMBEDDED_FILES, FLAG_PDF_JAVASCRIPT, ValidationLimits

OK = "ok"


def flag(name: str) -> str:
    return f"flag:{name}"


def good_invoice_pdf(serial: int = 0) -> bytes:
    """A small real invoice PDF; `serial` changes the invoice number so every file is unique."""
    spec = SPECS["northwind-invoice"]
    return invoice_pdf(dataclasses.replace(spec, number=f"{spec.number}-{serial:03d}"))


def good_invoice_png(serial: int = 0, dpi: int = 100) -> bytes:
    spec = SPECS["brenner-rechnung-scan"]
    pdf = invoice_pdf(dataclasses.replace(spec, number=f"{spec.number}-{serial:03d}"))
    buffer = io.BytesIO()
    rasterise(pdf, dpi=dpi)[0].save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid 1-bit PNG that would decode to width×height pixels, built in ~0.1 s.

    The rows are all zero, so the compressed IDAT stays ~100 KB; it is streamed through zlib
    one row block at a time, so building it never holds the decoded image in memory.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    block = row * 1000
    parts = [compressor.compress(block) for _ in range(height // 1000)]
    parts.append(compressor.compress(row * (height % 1000)))
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def pdf_with(script: str | None = None, attachment: bytes | None = None) -> bytes:
    doc = pymupdf.open(stream=good_invoice_pdf(900 + bool(script) + 2 * bool(attachment)))
    if script is not None:
        action = doc.get_new_xref()
        doc.update_object(action, f"<</S/JavaScript/JS({script})>>")
        doc.xref_set_key(doc.pdf_catalog(), "OpenAction", f"{action} 0 R")
    if attachment is not None:
        doc.embfile_add("remittance.txt", attachment, filename="remittance.txt")
    data = doc.tobytes(garbage=3, deflate=True, no_new_id=True)
    doc.close()
    return data


def encrypted_pdf() -> bytes:
    doc = pymupdf.open(stream=good_invoice_pdf(910))
    data = doc.tobytes(
        encryption=pymupdf.PDF_ENCRYPT_AES_256,  # type: ignore[attr-defined]
        user_pw="secret",
        owner_pw="owner-secret",
    )
    doc.close()
    return data


def long_pdf(pages: int) -> bytes:
    doc = pymupdf.open()
    for n in range(pages):
        doc.new_page(width=595, height=842).insert_text((72, 72), f"Page {n + 1}")
    data = doc.tobytes(garbage=3, deflate=True, no_new_id=True)
    doc.close()
    return data


def invoice_jpeg(serial: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(good_invoice_png(920 + serial, dpi=72))).save(
        buffer, format="JPEG", quality=85
    )
    return buffer.getvalue()


def zip_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def many_page_tiff(pages: int) -> bytes:
    frames = [Image.new("L", (64, 64), 255 - n) for n in range(pages)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


HTML_PAGE = b"""<!DOCTYPE html>
<html><head><title>Sign in - Supplier Portal</title></head>
<body><form action="/login"><input name="user"><input type="password" name="pw"></form>
<p>Your session has expired. Please sign in to download invoice INV-2291.</p></body></html>
"""


def build_bad_corpus(directory: Path) -> dict[str, str]:
    """Write one file per bad-input case (plus two accepted controls) and return expectations."""
    directory.mkdir(parents=True, exist_ok=True)
    max_pages = ValidationLimits().max_pages
    invoice = good_invoice_pdf(901)
    jpeg = invoice_jpeg()
    files: dict[str, tuple[bytes, str]] = {
        "empty.pdf": (b"", RejectionCode.EMPTY.value),
        "login-page.pdf": (HTML_PAGE, RejectionCode.UNSUPPORTED_FORMAT.value),
        "invoices.pdf": (zip_of("invoice.pdf", invoice), RejectionCode.UNSUPPORTED_FORMAT.value),
        "notes.txt": (
            b"Invoice 4411\nTotal: 120.00 EUR\nPlease pay by Friday.\n",
            RejectionCode.UNSUPPORTED_FORMAT.value,
        ),
        "truncated.pdf": (invoice[: len(invoice) * 6 // 10], RejectionCode.CORRUPT.value),
        "encrypted.pdf": (encrypted_pdf(), RejectionCode.ENCRYPTED_PDF.value),
        "javascript.pdf": (pdf_with(script="app.alert('paid')"), flag(FLAG_PDF_JAVASCRIPT)),
        "attachment.pdf": (
            pdf_with(attachment=b"Remittance advice\n"),
            flag(FLAG_PDF_EMBEDDED_FILES),
        ),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], RejectionCode.CORRUPT.value),
        "garbled.jpg": (jpeg[:4] + bytes(range(256)) * 8, RejectionCode.CORRUPT.value),
        "one-pixel.png": (tiny_png(), RejectionCode.TOO_SMALL.value),
        "bomb-30000x30000.png": (png_bomb(), RejectionCode.DECOMPRESSION_BOMB.value),
        f"{max_pages + 1}-pages.pdf": (
            long_pdf(max_pages + 1),
            RejectionCode.TOO_MANY_PAGES.value,
        ),
        f"{max_pages + 1}-pages.tiff": (
            many_page_tiff(max_pages + 1),
            RejectionCode.TOO_MANY_PAGES.value,
        ),
        # Controls: the name lies but the bytes are fine, so these are accepted.
        "scan.jpg": (good_invoice_png(902, dpi=72), OK),
        "invoice.pdf": (invoice, OK),
    }
    for name, (data, _) in files.items():
        (directory / name).write_bytes(data)
    return {name: expected for name, (_, expected) in files.items()}
