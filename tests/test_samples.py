"""samples: the project's own invoices generate, add up, and carry their truth in the pixels."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from mmflow.tasks.samples import SPECS, format_amount, make_samples, sample_truth
from mmflow.tasks.validate import validate_bytes


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_samples(tmp_path_factory.mktemp("samples"))


def test_every_sample_has_a_truth_file_beside_it(samples: list[Path]) -> None:
    assert len(samples) == 5
    for path in samples:
        assert path.with_name(f"{path.stem}.truth.json").is_file()


def test_every_sample_passes_validation_with_its_page_count(samples: list[Path]) -> None:
    for path in samples:
        result = validate_bytes(path.read_bytes(), path.name)
        assert result.pages == sample_truth(path)["pages"], path.name
        assert result.flags == []


def test_sample_forms_cover_text_scan_photo_tiff_and_rotated(samples: list[Path]) -> None:
    media = {p.name: validate_bytes(p.read_bytes(), p.name).media_type for p in samples}
    assert sorted(media.values()) == [
        "application/pdf",
        "application/pdf",
        "image/jpeg",
        "image/png",
        "image/tiff",
    ]


def test_generation_is_deterministic(samples: list[Path], tmp_path: Path) -> None:
    again = make_samples(tmp_path)
    for first, second in zip(samples, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name


@pytest.mark.parametrize("name", sorted(SPECS))
def test_amounts_add_up_in_every_spec(name: str) -> None:
    spec = SPECS[name]
    assert sum(item.amount for item in spec.items) == spec.subtotal
    assert spec.subtotal + spec.tax_amount == spec.total
    assert spec.due_date > spec.issue_date


def test_truth_values_are_contract_strings(samples: list[Path]) -> None:
    truth = sample_truth(samples[0])
    assert truth["issue_date"] == "2026-03-14"
    assert truth["currency"] == "GBP"
    total = Decimal(truth["subtotal"]) + Decimal(truth["tax_amount"])
    assert Decimal(truth["total"]) == total
    assert sum(Decimal(i["amount"]) for i in truth["line_items"]) == Decimal(truth["subtotal"])


def test_text_pdf_text_layer_contains_every_printed_truth_value(samples: list[Path]) -> None:
    path = next(p for p in samples if sample_truth(p)["form"] == "text_pdf")
    truth = sample_truth(path)
    with pymupdf.open(path) as doc:
        text = doc[0].get_text()
    for field, printed in truth["printed"].items():
        assert printed in text, field
    for field in ("issuer_name", "buyer_name", "invoice_number"):
        assert truth[field] in text, field
    for item in truth["line_items"]:
        assert item["description"] in text


def test_scan_pdf_has_no_text_layer(samples: list[Path]) -> None:
    path = next(p for p in samples if sample_truth(p)["form"] == "scan_pdf")
    with pymupdf.open(path) as doc:
        assert doc[0].get_text().strip() == ""
        assert len(doc[0].get_images()) == 1


def test_photo_is_stored_sideways_with_an_exif_orientation(samples: list[Path]) -> None:
    path = next(p for p in samples if sample_truth(p)["form"] == "photo_jpeg")
    with Image.open(path) as image:
        assert image.getexif()[0x0112] == 6
        assert image.width > image.height  # stored landscape, displayed portrait


def test_tiff_is_two_page_bilevel_group4(samples: list[Path]) -> None:
    path = next(p for p in samples if sample_truth(p)["form"] == "fax_tiff")
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        assert getattr(image, "n_frames", 1) == 2
        assert image.mode == "1"
        assert image.info["compression"] == "group4"


def test_german_and_french_amounts_use_their_separators() -> None:
    assert format_amount(Decimal("1252.8"), "de") == "1.252,80"
    assert format_amount(Decimal("1197.36"), "fr") == "1 197,36"
    assert format_amount(Decimal("1197.36"), "en") == "1,197.36"
