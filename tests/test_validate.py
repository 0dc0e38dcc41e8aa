"""validate: type from bytes, limits before decoding, typed rejections with actionable messages."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from mmflow.tasks.errors import Rejection, RejectionCode
from mmflow.tasks.normalise import NormaliseOptions, normalise_document
from mmflow.tasks.validate import (
    FLAG_PDF_EMBEDDED_FILES,
    FLAG_PDF_JAVASCRIPT,
    FLAG_PDF_OWNER_PASSWORD,
    FLAG_PDF_REPAIRED,
    ValidationLimits,
    sniff,
    validate_bytes,
)
from tests.badinputs import (
    OK,
    build_bad_corpus,
    build_mixed_directory,
    good_invoice_pdf,
    good_invoice_png,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    directory = tmp_path_factory.mktemp("bad")
    return directory, build_bad_corpus(directory)


def outcome(path: Path, limits: ValidationLimits | None = None) -> str:
    """The corpus notation for what validate did with a file: code, "ok" or "flag:<name>"."""
    try:
        result = validate_bytes(path.read_bytes(), path.name, limits or ValidationLimits())
    except Rejection as rejection:
        return rejection.code.value
    return f"flag:{','.join(result.flags)}" if result.flags else OK


def rejection_of(data: bytes, limits: ValidationLimits | None = None) -> Rejection:
    with pytest.raises(Rejection) as caught:
        validate_bytes(data, "input.bin", limits or ValidationLimits())
    return caught.value


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "white").save(buffer, format="PNG")
    return buffer.getvalue()


CORPUS_FILES = [
    "empty.pdf",
    "login-page.pdf",
    "invoices.pdf",
    "notes.txt",
    "truncated.pdf",
    "encrypted.pdf",
    "javascript.pdf",
    "attachment.pdf",
    "truncated.jpg",
    "garbled.jpg",
    "one-pixel.png",
    "bomb-30000x30000.png",
    "51-pages.pdf",
    "51-pages.tiff",
    "scan.jpg",
    "invoice.pdf",
]


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_each_corpus_file_ends_with_its_expected_outcome(
    corpus: tuple[Path, dict[str, str]], name: str
) -> None:
    directory, expected = corpus
    assert outcome(directory / name) == expected[name]


def test_corpus_covers_every_case_the_issue_lists(corpus: tuple[Path, dict[str, str]]) -> None:
    _, expected = corpus
    assert set(expected) == set(CORPUS_FILES)
    assert {
        "empty",
        "unsupported_format",
        "corrupt",
        "encrypted_pdf",
        "too_small",
        "decompression_bomb",
        "too_many_pages",
        "flag:pdf_javascript",
        "flag:pdf_embedded_files",
        "ok",
    } <= set(expected.values())


ACCEPTED_FILES = ("scan.jpg", "invoice.pdf", "javascript.pdf", "attachment.pdf")


@pytest.mark.parametrize("name", [n for n in CORPUS_FILES if n not in ACCEPTED_FILES])
def test_rejection_messages_name_the_file_and_say_what_to_do(
    corpus: tuple[Path, dict[str, str]], name: str
) -> None:
    directory, _ = corpus
    with pytest.raises(Rejection) as caught:
        validate_bytes((directory / name).read_bytes(), name)
    message = caught.value.message
    assert name in message
    advice = ("submit", "send", "fetch", "split", "open it", "unpack", "export", "rescan")
    assert any(word in message.lower() for word in advice), message


def test_zip_named_pdf_message_says_to_unpack_it(corpus: tuple[Path, dict[str, str]]) -> None:
    directory, _ = corpus
    rejection = rejection_of((directory / "invoices.pdf").read_bytes())
    assert "ZIP archive" in rejection.message
    assert "unpack" in rejection.message


def test_html_named_pdf_is_identified_as_a_web_page(corpus: tuple[Path, dict[str, str]]) -> None:
    directory, _ = corpus
    assert "HTML" in rejection_of((directory / "login-page.pdf").read_bytes()).message


def test_word_document_is_named_as_such() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>")
    rejection = rejection_of(buffer.getvalue())
    assert rejection.code is RejectionCode.UNSUPPORTED_FORMAT
    assert "Word document" in rejection.message


def test_type_comes_from_bytes_not_the_name(corpus: tuple[Path, dict[str, str]]) -> None:
    directory, _ = corpus
    result = validate_bytes((directory / "scan.jpg").read_bytes(), "scan.jpg")
    assert result.media_type == "image/png"


def test_accepted_pdf_reports_hash_size_and_pages() -> None:
    data = good_invoice_pdf(1)
    result = validate_bytes(data, "invoice.pdf")
    assert (result.media_type, result.pages, result.size) == ("application/pdf", 1, len(data))
    assert len(result.sha256) == 64 and result.flags == []


def test_javascript_pdf_is_accepted_with_the_javascript_flag(
    corpus: tuple[Path, dict[str, str]],
) -> None:
    directory, _ = corpus
    result = validate_bytes((directory / "javascript.pdf").read_bytes(), "javascript.pdf")
    assert result.flags == [FLAG_PDF_JAVASCRIPT]


def test_pdf_with_attachment_is_accepted_with_the_embedded_files_flag(
    corpus: tuple[Path, dict[str, str]],
) -> None:
    directory, _ = corpus
    result = validate_bytes((directory / "attachment.pdf").read_bytes(), "attachment.pdf")
    assert result.flags == [FLAG_PDF_EMBEDDED_FILES]


def test_file_over_the_byte_limit_is_too_large() -> None:
    rejection = rejection_of(good_invoice_pdf(2), ValidationLimits(max_bytes=1000))
    assert rejection.code is RejectionCode.TOO_LARGE
    assert "MB" in rejection.message


def test_image_over_the_pixel_limit_is_rejected_before_decoding() -> None:
    rejection = rejection_of(png((400, 300)), ValidationLimits(max_pixels=100_000))
    assert rejection.code is RejectionCode.DECOMPRESSION_BOMB


def test_bomb_message_states_the_declared_size(corpus: tuple[Path, dict[str, str]]) -> None:
    directory, _ = corpus
    rejection = rejection_of((directory / "bomb-30000x30000.png").read_bytes())
    assert "900 megapixels" in rejection.message


def test_image_with_an_overlong_side_is_too_large() -> None:
    rejection = rejection_of(png((5000, 40), mode="L"), ValidationLimits(max_side_px=4000))
    assert rejection.code is RejectionCode.TOO_LARGE


def test_narrow_image_under_the_minimum_side_is_too_small() -> None:
    assert rejection_of(png((800, 20))).code is RejectionCode.TOO_SMALL


def test_pdf_page_that_renders_over_the_pixel_limit_is_a_bomb() -> None:
    doc = pymupdf.open()
    doc.new_page(width=14_400, height=14_400)  # 200 × 200 inches
    rejection = rejection_of(doc.tobytes())
    assert rejection.code is RejectionCode.DECOMPRESSION_BOMB


def test_pdf_with_no_pages_is_corrupt() -> None:
    data = (
        b"%PDF-1.7\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF"
    )
    assert rejection_of(data).code is RejectionCode.CORRUPT


def test_pdf_header_followed_by_garbage_is_corrupt() -> None:
    assert rejection_of(b"%PDF-1.4\n" + bytes(range(256)) * 4).code is RejectionCode.CORRUPT


def test_pdf_whose_xref_was_lost_but_pages_are_intact_is_accepted_as_repaired() -> None:
    data = good_invoice_pdf(3)
    cut = data[: data.rindex(b"startxref")]  # drop only the trailer pointer
    result = validate_bytes(cut, "repaired.pdf")
    assert FLAG_PDF_REPAIRED in result.flags


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8, 0.95])
def test_pdf_cut_anywhere_is_rejected_as_corrupt(fraction: float) -> None:
    data = good_invoice_pdf(4)
    assert rejection_of(data[: int(len(data) * fraction)]).code is RejectionCode.CORRUPT


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.6, 0.9])
def test_jpeg_cut_anywhere_is_rejected_as_corrupt(fraction: float) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((200, 200), 40).convert("RGB").save(buffer, format="JPEG")
    data = buffer.getvalue()
    assert rejection_of(data[: int(len(data) * fraction)]).code is RejectionCode.CORRUPT


def test_pdf_encrypted_without_a_user_password_is_accepted_and_flagged() -> None:
    doc = pymupdf.open(stream=good_invoice_pdf(5))
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner")  # type: ignore[attr-defined]
    result = validate_bytes(data, "restricted.pdf")
    assert (result.pages, result.flags) == (1, [FLAG_PDF_OWNER_PASSWORD])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP"])
def test_every_supported_raster_format_is_accepted(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(buffer, format=fmt)
    result = validate_bytes(buffer.getvalue(), f"page.{fmt.lower()}")
    assert result.pages == 1 and result.media_type.startswith("image/")


def test_multipage_tiff_counts_every_frame() -> None:
    frames = [Image.new("L", (100, 140), 255) for _ in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    result = validate_bytes(buffer.getvalue(), "scan.tiff")
    assert (result.media_type, result.pages) == ("image/tiff", 3)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x1f\x8b\x08\x00" + bytes(60), "gzip"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(60), "HEIC"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(60), "Microsoft Office"),
        (b'<?xml version="1.0"?><Invoice/>', "XML"),
        (bytes(range(256)), "unrecognised binary"),
        (b"BMW service invoice 2291\nTotal 120.00 EUR\n", "plain text"),
    ],
)
def test_unsupported_types_are_named_in_the_message(data: bytes, words: str) -> None:
    rejection = rejection_of(data)
    assert rejection.code is RejectionCode.UNSUPPORTED_FORMAT
    assert words in rejection.message


def test_sniff_prefers_zip_over_a_pdf_header_inside_it() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("invoice.pdf", good_invoice_pdf(6))
    assert sniff(buffer.getvalue()).media_type is None


def test_mixed_directory_holds_fifty_unique_files_each_with_an_outcome(tmp_path: Path) -> None:
    expected = build_mixed_directory(tmp_path, n=50)
    files = sorted(p for p in tmp_path.iterdir())
    assert len(files) == len(expected) == 50
    assert len({p.read_bytes() for p in files}) == 50
    assert {p.name: outcome(p) for p in files} == expected


def test_damaged_files_end_as_rejections_or_accepted_never_as_crashes() -> None:
    """Seeded byte flips, cuts and splices of real files: only `Rejection` may escape."""
    rng = random.Random(7)
    buffer = io.BytesIO()
    Image.effect_noise((120, 90), 40).convert("RGB").save(buffer, format="JPEG")
    originals = [good_invoice_pdf(7), good_invoice_png(7, dpi=40), buffer.getvalue()]
    outcomes: set[str] = set()
    for _ in range(240):
        data = bytearray(rng.choice(originals))
        choice = rng.random()
        if choice < 0.4:
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.7:
            data = data[: rng.randrange(len(data))]
        else:
            at = rng.randrange(len(data))
            data[at : at + rng.randint(1, 500)] = rng.randbytes(rng.randint(0, 500))
        try:
            source = validate_bytes(bytes(data), "damaged")
            normalise_document(bytes(data), source, NormaliseOptions(fix_orientation=False))
            outcomes.add(OK)
        except Rejection as rejection:
            outcomes.add(rejection.code.value)
    assert {OK, RejectionCode.CORRUPT.value} <= outcomes
