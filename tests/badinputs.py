"""The bad-input corpus (issue 2, "Bad input"; built in mmflow.tasks.eval.bad_inputs, which
the evaluation's stress tier runs too), a mixed batch directory, and the hostile corpus.

Each builder returns `{file name: expected outcome}`, where the outcome is a rejection code
(`RejectionCode` value), `"ok"` for an accepted file, or `"flag:<name>"` for a file that is
accepted and carries that flag. Files are built here, cheaply and deterministically; nothing is
downloaded or copied from shared data. Used by the validate tests and by the flow tests.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import wavfile

from mmflow.tasks.eval.bad_inputs import (
    HTML_PAGE,
    OK,
    build_bad_corpus,
    good_invoice_pdf,
    good_invoice_png,
)
from mmflow.tasks.eval.bad_inputs import encrypted_pdf as _encrypted_pdf
from mmflow.tasks.eval.bad_inputs import many_page_tiff as _many_page_tiff


def build_mixed_directory(directory: Path, n: int = 50) -> dict[str, str]:
    """`n` files: the whole bad corpus, topped up with unique good invoices (PDF and PNG)."""
    expected = build_bad_corpus(directory)
    serial = 0
    while len(expected) < n:
        if serial % 2 == 0:
            name, data = f"good-{serial:03d}.pdf", good_invoice_pdf(serial)
        else:
            name, data = f"good-{serial:03d}.png", good_invoice_png(serial, dpi=60)
        (directory / name).write_bytes(data)
        expected[name] = OK
        serial += 1
    return expected


# ---------------------------------------------------------------- the hostile corpus (issue 9, 15)
#
# Each case writes one input into a folder and names the code it must end with, "ok" for a
# result. `pipeline` says which steps it goes through: "document" (read → validate →
# normalise) or "audio" (hash → validate → normalise). tests/test_bad_inputs.py runs every case
# in a child process, measuring its peak memory and time, and checks docs/bad-inputs.md.

DOCUMENT, AUDIO = "document", "audio"


@dataclasses.dataclass(frozen=True)
class HostileCase:
    """One bad input: how to make it, what it is, and how it must end."""

    name: str
    pipeline: str
    expected: str
    what: str
    make: Callable[[Path], Path]


def _stream(dictionary: bytes, data: bytes) -> bytes:
    return b"<<" + dictionary + b"/Length %d>>stream\n" % len(data) + data + b"\nendstream"


def pdf_with_objects(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF whose object i+1 is objects[i], with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R%s>>\n" % (len(objects) + 1, trailer)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


_CATALOG = b"<</Type/Catalog/Pages 2 0 R>>"
_ONE_KID = b"<</Type/Pages/Kids[3 0 R]/Count 1>>"
_TEXT = _stream(b"", b"BT /F1 24 Tf 72 720 Td (Invoice 42  Total 120.00 EUR) Tj ET")
_FONT = b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>"


def _page(extra: bytes = b"", box: bytes = b"[0 0 595 842]") -> bytes:
    return b"<</Type/Page/Parent 2 0 R/MediaBox" + box + extra + b">>"


def _text_page(extra: bytes = b"") -> list[bytes]:
    """Objects 1-5: catalog, page tree, a page with one line of text, its content and font."""
    resources = b"/Resources<</Font<</F1 5 0 R>>%s>>/Contents 4 0 R" % extra
    return [_CATALOG, _ONE_KID, _page(resources), _TEXT, _FONT]


def _deflated_repeat(unit: bytes, total: int, levels: int = 1) -> bytes:
    """`unit` repeated to `total` bytes, deflated `levels` times, built a block at a time."""
    compressor = zlib.compressobj(9)
    block = unit * max(1, (1 << 20) // len(unit))
    parts = [compressor.compress(block) for _ in range(total // len(block))]
    data = b"".join(parts) + compressor.flush()
    for _ in range(levels - 1):
        data = zlib.compress(data, 9)
    return data


def _lzw_bomb(repeats: int) -> bytes:
    """PDF LZWDecode codes that build the longest string of "0" the table holds (3,839 bytes)
    and then repeat it: 12 bits each for 3,839 bytes out, as a hostile writer would emit."""
    codes = [256, ord("0"), *range(258, 4096), *[4095] * repeats, 257]
    out, buffer, bits, width, size, first = bytearray(), 0, 0, 9, 258, True
    for code in codes:
        buffer, bits = (buffer << width) | code, bits + width
        while bits >= 8:
            bits -= 8
            out.append((buffer >> bits) & 0xFF)
        if code == 257:
            break
        if code == 256:
            size, width, first = 258, 9, True
            continue
        if not first and size < 4096:
            size += 1
        first = False
        if size + 1 >= (1 << width) and width < 12:
            width += 1
    if bits:
        out.append((buffer << (8 - bits)) & 0xFF)
    return bytes(out)


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return make


def _written(name: str, build: Callable[[], bytes]) -> Callable[[Path], Path]:
    return lambda folder: _write(name, build())(folder)


def _pdf_declaring_pages(count: int) -> bytes:
    return pdf_with_objects([_CATALOG, b"<</Type/Pages/Kids[3 0 R]/Count %d>>" % count, _page()])


def _pdf_content_bomb() -> bytes:
    content = _stream(b"/Filter/FlateDecode", _deflated_repeat(b"0 0 m 1 1 l\n", 1 << 28))
    return pdf_with_objects([_CATALOG, _ONE_KID, _page(b"/Contents 4 0 R"), content])


def _pdf_double_flate_bomb() -> bytes:
    data = _deflated_repeat(b" ", 1 << 28, levels=2)
    content = _stream(b"/Filter[/FlateDecode/FlateDecode]", data)
    return pdf_with_objects([_CATALOG, _ONE_KID, _page(b"/Contents 4 0 R"), content])


def _pdf_lzw_bomb() -> bytes:
    content = _stream(b"/Filter/LZWDecode", _lzw_bomb(100_000))  # 380 MB from 150 KB
    return pdf_with_objects([_CATALOG, _ONE_KID, _page(b"/Contents 4 0 R"), content])


def _pdf_object_stream_bomb() -> bytes:
    """The page lives in an object stream padded with 256 MB of spaces; an xref stream finds it."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number, body in ((1, _CATALOG), (2, _ONE_KID)):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    header = b"3 0 "
    compressor = zlib.compressobj(9)
    data = compressor.compress(header + _page() + b" ")
    blank = b" " * (1 << 20)
    data += b"".join(compressor.compress(blank) for _ in range(256)) + compressor.flush()
    offsets[4] = len(out)
    out += b"4 0 obj\n" + _stream(b"/Type/ObjStm/N 1/First %d/Filter/FlateDecode" % 4, data)
    out += b"\nendobj\n"
    xref = len(out)
    rows = [b"\x00" + struct.pack(">I", 0) + b"\xff\xff"]
    rows += [b"\x01" + struct.pack(">I", offsets[n]) + b"\x00\x00" for n in (1, 2)]
    rows += [b"\x02" + struct.pack(">I", 4) + b"\x00\x00"]
    rows += [b"\x01" + struct.pack(">I", offsets[4]) + b"\x00\x00"]
    rows += [b"\x01" + struct.pack(">I", xref) + b"\x00\x00"]
    table = b"".join(rows)
    out += b"5 0 obj\n" + _stream(b"/Type/XRef/Size 6/W[1 4 2]/Root 1 0 R", table)
    out += b"\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def _pdf_nested(depth: int, dictionaries: bool) -> bytes:
    """d05/d06 of the probe: an object nested `depth` deep, referenced from the page."""
    nested = b"<</A " * depth + b">>" * depth if dictionaries else b"[" * depth + b"]" * depth
    return pdf_with_objects([*_text_page(), nested]).replace(
        b"/Contents 4 0 R>>", b"/Contents 4 0 R/PieceInfo 6 0 R>>", 1
    )


def _pdf_nested_in_content(depth: int) -> bytes:
    """A marked-content property list nested `depth` deep inside the page's content stream."""
    content = _stream(b"", b"/P " + b"<</A " * depth + b">>" * depth + b" BDC EMC")
    return pdf_with_objects([_CATALOG, _ONE_KID, _page(b"/Contents 4 0 R"), content])


def _pdf_broken_xref() -> bytes:
    """Every offset in the cross-reference table is wrong: MuPDF must rebuild it."""
    data = pdf_with_objects(_text_page())
    start = data.index(b"xref\n")
    lines = data[start:].split(b"\n")
    lines = [b"%010d 00000 n " % 7 if line.endswith(b" 00000 n ") else line for line in lines]
    return data[:start] + b"\n".join(lines)


def _pdf_huge_image() -> bytes:
    image = _stream(
        b"/Type/XObject/Subtype/Image/Width 60000/Height 60000/ColorSpace/DeviceGray"
        b"/BitsPerComponent 8/Filter/FlateDecode",
        _deflated_repeat(b"\x00", 1 << 26),
    )
    content = _stream(b"", b"q 500 0 0 700 50 50 cm /Im0 Do Q")
    page = _page(b"/Resources<</XObject<</Im0 5 0 R>>>>/Contents 4 0 R")
    return pdf_with_objects([_CATALOG, _ONE_KID, page, content, image])


def _pdf_many_objects(count: int = 300_000) -> bytes:
    return pdf_with_objects([*_text_page(), *([b"null"] * count)])


def _pdf_page_tree_cycle() -> bytes:
    return pdf_with_objects([_CATALOG, b"<</Type/Pages/Kids[2 0 R]/Count 1>>", _page()])


def _pdf_form_fan_out(levels: int = 9, fan: int = 10) -> bytes:
    """A "billion laughs" drawing: each form draws the next one `fan` times, `levels` deep."""
    page = _page(b"/Resources<</XObject<</F 5 0 R>>>>/Contents 4 0 R")
    objects = [_CATALOG, _ONE_KID, page, _stream(b"", b"/F Do")]
    for level in range(levels):
        number = 5 + level
        if level == levels - 1:
            body, resources = b"0 0 m 100 100 l S", b""
        else:
            body = b" ".join([b"/F Do"] * fan)
            resources = b"/Resources<</XObject<</F %d 0 R>>>>" % (number + 1)
        form = b"/Type/XObject/Subtype/Form/BBox[0 0 595 842]" + resources
        objects.append(_stream(form, body))
    return pdf_with_objects(objects)


def _image(mode: str, size: tuple[int, int], fmt: str, **save: object) -> bytes:
    image = Image.new(mode, size, 255 if mode in ("L", "I;16", "P") else "white")
    if mode in ("L", "RGB", "CMYK"):
        image.paste(0 if mode == "L" else (0, 0, 0, 255)[: len(mode)], (40, 40, 400, 80))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def _largest_scan() -> bytes:
    """88 megapixels of text-like bars: the most a default limit lets through."""
    image = Image.new("L", (9400, 9400), 255)
    for top in range(200, 9200, 300):
        image.paste(0, (300, top, 9100, top + 40))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with_chunk(kind: bytes, body: bytes) -> bytes:
    png = _image("RGB", (200, 100), "PNG")
    return png[:33] + _png_chunk(kind, body) + png[33:]  # right after IHDR


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares `width` × `height` and whose pixel data is one empty row."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _bmp_declaring(width: int, height: int) -> bytes:
    header = struct.pack("<2sIHHI", b"BM", 54 + 16, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 16, 2835, 2835, 0, 0)
    return header + info + b"\x00" * 16


def _gif_animation(frames: int) -> bytes:
    first = Image.new("P", (64, 64), 0)
    others = [Image.new("P", (64, 64), n % 200 + 1) for n in range(frames - 1)]
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=others, duration=10, loop=0)
    return buffer.getvalue()


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (300, 200), 1)
    image.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 300, 200))
    image.paste(0, (20, 20, 280, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    return buffer.getvalue()


def _jpeg_with_garbage_exif() -> bytes:
    jpeg = _image("RGB", (300, 200), "JPEG")
    garbage = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + bytes(range(256)) * 4
    app1 = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    return jpeg[:2] + app1 + jpeg[2:]


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="800" height="600">'
SVG += b'<text x="10" y="40">Invoice 42</text></svg>\n'
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)
AVIF = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(200)


def _ico() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "white").save(buffer, format="ICO")
    return buffer.getvalue()


# ---------------------------------------------------------------- file-system cases


def _link(name: str, target: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.symlink_to(target)
        return path

    return make


def _outside_link(folder: Path) -> Path:
    outside = folder.parent / f"{folder.name}-outside.pdf"
    outside.write_bytes(good_invoice_pdf(930))
    path = folder / "link-out.pdf"
    path.symlink_to(outside)
    return path


def _loop(folder: Path) -> Path:
    (folder / "loop-b.pdf").symlink_to("loop-a.pdf")
    (folder / "loop-a.pdf").symlink_to("loop-b.pdf")
    return folder / "loop-a.pdf"


def _fifo(name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        os.mkfifo(path)
        return path

    return make


def _sparse(name: str, size: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        with path.open("wb") as handle:
            handle.truncate(size)
        return path

    return make


def _raw_name(raw: bytes, data: Callable[[], bytes]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = Path(os.fsdecode(os.fsencode(folder) + b"/" + raw))
        path.write_bytes(data())
        return path

    return make


# ---------------------------------------------------------------- audio


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def _speech(folder: Path) -> np.ndarray:
    """A few seconds of espeak-ng speech as 16 kHz float32 (made once per folder)."""
    cached = folder / ".speech.wav"
    if not cached.exists():
        raw = folder / ".speech.raw.wav"
        text = "Please send the revised invoice before Friday. The total is four hundred euros."
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(cached)], check=True)
    rate, samples = wavfile.read(cached)
    assert rate == 16_000
    return (samples.astype(np.float32) / 32768).astype(np.float32)


def _wav(
    name: str, build: Callable[[np.ndarray], tuple[int, np.ndarray]]
) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        rate, samples = build(_speech(folder))
        path = folder / name
        wavfile.write(path, rate, samples)
        return path

    return make


def _with_non_finite(speech: np.ndarray) -> tuple[int, np.ndarray]:
    samples = speech.copy()
    samples[::997], samples[5::1999], samples[9::2999] = np.nan, np.inf, -np.inf
    return 16_000, samples


def _with_spikes(speech: np.ndarray) -> tuple[int, np.ndarray]:
    """Speech with a few float samples of 1e6 (decoder garbage): on their own they set the
    gain to -110 dB and the trim, and every word was lost while the run said `ok`."""
    samples = speech.copy()
    samples[1000::20011] = 1e6
    return 16_000, samples


def _surround_96k(speech: np.ndarray) -> tuple[int, np.ndarray]:
    upsampled = np.repeat(speech, 6)  # 16 kHz → 96 kHz, crude but real samples
    channels = np.stack([upsampled * (0.3 + 0.1 * c) for c in range(6)], axis=1)
    return 96_000, channels.astype(np.float32)


def _wav_claiming_hours(folder: Path) -> Path:
    """A 3-second WAV whose RIFF and data sizes claim 10 hours of 16-bit mono 16 kHz."""
    path = folder / "claims-10-hours.wav"
    wavfile.write(path, 16_000, (_speech(folder)[:48_000] * 32767).astype(np.int16))
    data = bytearray(path.read_bytes())
    claimed = 10 * 3600 * 16_000 * 2
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", claimed)
    data[4:8] = struct.pack("<I", claimed + at)
    path.write_bytes(bytes(data))
    return path


def _truncated_wav(folder: Path) -> Path:
    path = folder / "truncated.wav"
    wavfile.write(path, 16_000, (_speech(folder) * 32767).astype(np.int16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 1])  # cut inside a sample
    return path


def _id3_only_mp3(folder: Path) -> Path:
    body = b"TIT2" + struct.pack(">I", 12) + b"\x00\x00" + b"\x03Invoice 42\x00"
    tag = b"ID3\x03\x00\x00" + bytes([0, 0, 0, len(body)]) + body
    return _write("tag-only.mp3", tag)(folder)


def _empty_ogg(folder: Path) -> Path:
    """An Ogg page header with no packets: a stream that begins and holds nothing."""
    page = b"OggS\x00\x02" + bytes(8) + struct.pack("<I", 1) + bytes(4) + bytes(4) + b"\x00"
    return _write("empty.ogg", page)(folder)


def _silence_hours(name: str, seconds: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        rate, frames = 16_000, seconds * 16_000
        with path.open("wb") as handle:
            handle.write(
                b"RIFF"
                + struct.pack("<I", 36 + 2 * frames)
                + b"WAVEfmt "
                + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
                + b"data"
                + struct.pack("<I", 2 * frames)
            )
            handle.truncate(44 + 2 * frames)  # sparse zeros: digital silence
        return path

    return make


def _video(name: str, with_audio: bool) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        video = ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2"]
        audio = ["-f", "lavfi", "-i", "sine=frequency=300:duration=2"] if with_audio else []
        _ffmpeg(*video, *audio, "-pix_fmt", "yuv420p", "-shortest", str(path))
        return path

    return make


def _transcoded(name: str, codec: list[str]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        source = _wav(f".{name}.wav", lambda s: (16_000, s))(folder)
        path = folder / name
        _ffmpeg("-i", str(source), *codec, str(path))
        return path

    return make


def hostile_cases() -> list[HostileCase]:
    """The corpus: every kind of bad input issue 9 lists, and the controls beside them."""
    gib = 1 << 30
    c = HostileCase
    doc, audio = DOCUMENT, AUDIO
    return [
        # ---- PDF
        c(
            "pages-100k.pdf",
            doc,
            "too_many_pages",
            "PDF page tree declaring 100,000 pages",
            _written("pages-100k.pdf", lambda: _pdf_declaring_pages(100_000)),
        ),
        c(
            "pages-count-wrong.pdf",
            doc,
            "corrupt",
            "PDF declaring 3 pages, holding 1",
            _written("pages-count-wrong.pdf", lambda: _pdf_declaring_pages(3)),
        ),
        c(
            "flate-bomb.pdf",
            doc,
            "decompression_bomb",
            "content stream inflating to 256 MB",
            _written("flate-bomb.pdf", _pdf_content_bomb),
        ),
        c(
            "double-flate-bomb.pdf",
            doc,
            "decompression_bomb",
            "Flate inside Flate, 256 MB",
            _written("double-flate-bomb.pdf", _pdf_double_flate_bomb),
        ),
        c(
            "lzw-bomb.pdf",
            doc,
            "decompression_bomb",
            "LZW content stream inflating to 380 MB",
            _written("lzw-bomb.pdf", _pdf_lzw_bomb),
        ),
        c(
            "object-stream-bomb.pdf",
            doc,
            "decompression_bomb",
            "object stream padded to 256 MB",
            _written("object-stream-bomb.pdf", _pdf_object_stream_bomb),
        ),
        c(
            "nested-arrays.pdf",
            doc,
            OK,
            "arrays nested 100,000 deep (d05 of the probe)",
            _written("nested-arrays.pdf", lambda: _pdf_nested(100_000, dictionaries=False)),
        ),
        c(
            "nested-dicts.pdf",
            doc,
            OK,
            "dictionaries nested 100,000 deep (d06)",
            _written("nested-dicts.pdf", lambda: _pdf_nested(100_000, dictionaries=True)),
        ),
        c(
            "nested-in-content.pdf",
            doc,
            "corrupt",
            "content stream holding a dictionary nested 100,000 deep",
            _written("nested-in-content.pdf", lambda: _pdf_nested_in_content(100_000)),
        ),
        c(
            "broken-xref.pdf",
            doc,
            OK,
            "every cross-reference offset wrong (rebuilt)",
            _written("broken-xref.pdf", _pdf_broken_xref),
        ),
        c(
            "huge-image.pdf",
            doc,
            "decompression_bomb",
            "embedded image of 60,000×60,000",
            _written("huge-image.pdf", _pdf_huge_image),
        ),
        c(
            "huge-page.pdf",
            doc,
            "decompression_bomb",
            "a 200 × 200 inch page",
            _written(
                "huge-page.pdf",
                lambda: pdf_with_objects([_CATALOG, _ONE_KID, _page(box=b"[0 0 14400 14400]")]),
            ),
        ),
        c(
            "tiny-page.pdf",
            doc,
            "too_small",
            "a 10 × 10 point page",
            _written(
                "tiny-page.pdf",
                lambda: pdf_with_objects([_CATALOG, _ONE_KID, _page(box=b"[0 0 10 10]")]),
            ),
        ),
        c(
            "many-objects.pdf",
            doc,
            "too_complex",
            "300,000 objects",
            _written("many-objects.pdf", _pdf_many_objects),
        ),
        c(
            "page-tree-cycle.pdf",
            doc,
            "corrupt",
            "page tree whose kid is itself",
            _written("page-tree-cycle.pdf", _pdf_page_tree_cycle),
        ),
        c(
            "form-fan-out.pdf",
            doc,
            "too_complex",
            "forms drawing forms: 10^9 drawings",
            _written("form-fan-out.pdf", _pdf_form_fan_out),
        ),
        c(
            "truncated.pdf",
            doc,
            "corrupt",
            "a PDF cut at 60 %",
            _written("truncated.pdf", lambda: good_invoice_pdf(931)[:3000]),
        ),
        c(
            "encrypted.pdf",
            doc,
            "encrypted_pdf",
            "user password required",
            _written("encrypted.pdf", _encrypted_pdf),
        ),
        c(
            "login-page.pdf",
            doc,
            "unsupported_format",
            "HTML saved as .pdf",
            _write("login-page.pdf", HTML_PAGE),
        ),
        c(
            "invoice.pdf",
            doc,
            OK,
            "control: a real invoice PDF",
            _written("invoice.pdf", lambda: good_invoice_pdf(932)),
        ),
        c(
            "largest-scan.png",
            doc,
            OK,
            "control: a 9,400² scan, near the pixel limit",
            _written("largest-scan.png", _largest_scan),
        ),
        # ---- raster images
        c(
            "ihdr-60000.png",
            doc,
            "decompression_bomb",
            "PNG header declaring 60,000×60,000",
            _written("ihdr-60000.png", lambda: _png_declaring(60_000, 60_000)),
        ),
        c(
            "ztxt-bomb.png",
            doc,
            "decompression_bomb",
            "zTXt chunk inflating to 64 MB",
            _written(
                "ztxt-bomb.png",
                lambda: _png_with_chunk(
                    b"zTXt", b"Comment\x00\x00" + _deflated_repeat(b"A", 1 << 26)
                ),
            ),
        ),
        c(
            "iccp-bomb.png",
            doc,
            "decompression_bomb",
            "iCCP profile inflating to 64 MB",
            _written(
                "iccp-bomb.png",
                lambda: _png_with_chunk(
                    b"iCCP", b"icc\x00\x00" + _deflated_repeat(b"\x00", 1 << 26)
                ),
            ),
        ),
        c(
            "bmp-100000.bmp",
            doc,
            "decompression_bomb",
            "BMP header declaring 100,000² pixels",
            _written("bmp-100000.bmp", lambda: _bmp_declaring(100_000, 100_000)),
        ),
        c(
            "animated-3000.gif",
            doc,
            OK,
            "GIF of 3,000 frames (first frame read)",
            _written("animated-3000.gif", lambda: _gif_animation(3000)),
        ),
        c(
            "frames-3000.tiff",
            doc,
            "too_many_pages",
            "TIFF of 3,000 frames",
            _written("frames-3000.tiff", lambda: _many_page_tiff(3000)),
        ),
        c(
            "cmyk.jpg",
            doc,
            OK,
            "CMYK JPEG",
            _written("cmyk.jpg", lambda: _image("CMYK", (600, 400), "JPEG")),
        ),
        c(
            "grey-16bit.png",
            doc,
            OK,
            "16-bit greyscale PNG",
            _written("grey-16bit.png", lambda: _image("I;16", (600, 400), "PNG")),
        ),
        c(
            "palette-transparent.png",
            doc,
            OK,
            "palette PNG with a transparent colour",
            _written("palette-transparent.png", _palette_with_transparency),
        ),
        c(
            "garbage-exif.jpg",
            doc,
            OK,
            "JPEG whose EXIF block is noise",
            _written("garbage-exif.jpg", _jpeg_with_garbage_exif),
        ),
        c("drawing.svg", doc, "unsupported_format", "SVG", _write("drawing.svg", SVG)),
        c("photo.heic", doc, "unsupported_format", "HEIC", _write("photo.heic", HEIC)),
        c("photo.avif", doc, "unsupported_format", "AVIF", _write("photo.avif", AVIF)),
        c("icon.ico", doc, "unsupported_format", "ICO", _written("icon.ico", _ico)),
        c(
            "notes.jpg",
            doc,
            "unsupported_format",
            "text named .jpg",
            _write("notes.jpg", b"Invoice 42\nTotal 120.00 EUR\n"),
        ),
        c(
            "cut.png",
            doc,
            "corrupt",
            "PNG cut in half",
            _written("cut.png", lambda: good_invoice_png(933, dpi=40)[:2000]),
        ),
        # ---- the file system
        c(
            "link-out.pdf",
            doc,
            "link_outside_folder",
            "symlink to a file outside the folder",
            _outside_link,
        ),
        c(
            "zero.pdf",
            doc,
            "link_outside_folder",
            "symlink to /dev/zero",
            _link("zero.pdf", "/dev/zero"),
        ),
        c("loop-a.pdf", doc, "not_a_file", "symlink loop", _loop),
        c("pipe.pdf", doc, "not_a_file", "FIFO named .pdf", _fifo("pipe.pdf")),
        c("sparse-3g.pdf", doc, "too_large", "sparse 3 GB file", _sparse("sparse-3g.pdf", 3 * gib)),
        c(
            "..\\..\\escape.pdf",
            doc,
            OK,
            "name with ..\\ segments (a legal Linux name)",
            _written("..\\..\\escape.pdf", lambda: good_invoice_pdf(934)),
        ),
        c(
            "new\nline.pdf",
            doc,
            OK,
            "name with a newline",
            _written("new\nline.pdf", lambda: good_invoice_pdf(935)),
        ),
        c(
            "long-name.pdf",
            doc,
            OK,
            "a 250-byte name",
            _written("x" * 246 + ".pdf", lambda: good_invoice_pdf(936)),
        ),
        c(
            "caf\\xe9.pdf",
            doc,
            OK,
            "name that is not UTF-8",
            _raw_name(b"caf\xe9.pdf", lambda: good_invoice_pdf(937)),
        ),
        # ---- audio
        c(
            "claims-10-hours.wav",
            audio,
            "corrupt",
            "WAV header claiming 10 h, 3 s inside",
            _wav_claiming_hours,
        ),
        c("truncated.wav", audio, "corrupt", "WAV cut inside a sample", _truncated_wav),
        c("tag-only.mp3", audio, "corrupt", "MP3 holding only an ID3 tag", _id3_only_mp3),
        c("empty.ogg", audio, "corrupt", "Ogg page with no packets", _empty_ogg),
        c(
            "nan-inf.wav",
            audio,
            OK,
            "float WAV with NaN and ±Inf samples",
            _wav("nan-inf.wav", _with_non_finite),
        ),
        c(
            "spikes.wav",
            audio,
            OK,
            "float WAV with a few samples of 1e6 (+120 dBFS)",
            _wav("spikes.wav", _with_spikes),
        ),
        c(
            "surround-96k.wav",
            audio,
            OK,
            "96 kHz, 6 channels",
            _wav("surround-96k.wav", _surround_96k),
        ),
        c(
            "dc-offset.wav",
            audio,
            OK,
            "speech riding on a +0.4 DC offset",
            _wav("dc-offset.wav", lambda s: (16_000, (s * 0.3 + 0.4).astype(np.float32))),
        ),
        c(
            "phase-inverted.wav",
            audio,
            OK,
            "stereo whose right channel is the left inverted",
            _wav("phase-inverted.wav", lambda s: (16_000, np.stack([s, -s], axis=1))),
        ),
        c(
            "silence-2h.wav",
            audio,
            OK,
            "two hours of digital silence",
            _silence_hours("silence-2h.wav", 7200),
        ),
        c(
            "silence-5h.wav",
            audio,
            "too_long",
            "five hours of silence (limit 4 h)",
            _silence_hours("silence-5h.wav", 5 * 3600),
        ),
        c(
            "video-only.mp4",
            audio,
            "unsupported_format",
            "a video without sound",
            _video("video-only.mp4", with_audio=False),
        ),
        c("video.mp4", audio, OK, "a video with a sound track", _video("video.mp4", True)),
        c(
            "invoice-to-meeting.pdf",
            audio,
            "unsupported_format",
            "a PDF given to the meeting flow",
            _written("invoice-to-meeting.pdf", lambda: good_invoice_pdf(938)),
        ),
        c("pipe.wav", audio, "not_a_file", "FIFO given to the meeting flow", _fifo("pipe.wav")),
        c(
            "speech.mp3",
            audio,
            OK,
            "control: speech as MP3",
            _transcoded("speech.mp3", ["-c:a", "libmp3lame"]),
        ),
    ]


def cases_table(cases: list[HostileCase]) -> str:
    """The Markdown table of docs/bad-inputs.md: each case, what it is, how it must end."""
    rows = ["| case | given to | what it is | ends as |", "| --- | --- | --- | --- |"]
    flow = {DOCUMENT: "invoice", AUDIO: "meeting"}
    for case in cases:
        name = case.name.replace("\n", "\\n").replace("|", "\\|")
        rows.append(f"| `{name}` | {flow[case.pipeline]} | {case.what} | `{case.expected}` |")
    return "\n".join(rows) + "\n"
