"""Issuer and buyer names on invoices the tests render with PyMuPDF, without any template:
where a page ties a name to the company (registration footer, bank account, address block)
and where it names the recipient instead."""

from __future__ import annotations

import pymupdf

from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.models import DocumentText, FieldValue
from mmflow.tasks.textlayer import read_text_layer

SizedLine = tuple[float, float, str, float]  # x, baseline y, text, font size

BODY: list[SizedLine] = [
    (50, 330, "Facture n° 2022089083", 10),
    (50, 344, "Date : 28/11/2022", 10),
    (300, 400, "Total TTC :", 10),
    (450, 400, "56,02 €", 10),
]


def render(lines: list[SizedLine]) -> DocumentText:
    """One A4 page with text at (x, baseline y) in the given sizes, read back as the flow does."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_font(fontname="F0", fontbuffer=pymupdf.Font("cjk").buffer)
    for x, y, text, size in lines:
        page.insert_text((x, y), text, fontsize=size, fontname="F0")
    pdf = doc.tobytes()
    doc.close()
    with pymupdf.open(stream=pdf, filetype="pdf") as reread:
        return DocumentText(pages=[read_text_layer(p, i + 1) for i, p in enumerate(reread)])


def fields(lines: list[SizedLine]) -> dict[str, FieldValue]:
    return extract_invoice(render(lines)).fields


RECIPIENT_TOP_RIGHT: list[SizedLine] = [
    (380, 110, "MARTIN DUPONT", 10),
    (380, 123, "27 rue Henri Rolland", 10),
    (380, 136, "69100 Villeurbanne", 10),
]


def test_the_name_heading_a_registration_footer_is_the_issuer_not_the_recipient() -> None:
    got = fields(
        RECIPIENT_TOP_RIGHT
        + BODY
        + [
            (270, 780, "PAPETERIE LUMIERE", 8),
            (140, 790, "Siège social : 16 rue Mollien - 92100 BOULOGNE", 8),
            (140, 800, "Sarl au capital de 10 000 € - RCS Paris B 530 848 134", 8),
        ]
    )
    assert got["issuer_name"].value == "PAPETERIE LUMIERE"
    assert got["issuer_name"].source == "registration"
    assert got["buyer_name"].value == "MARTIN DUPONT"


def test_a_legal_form_name_on_the_registration_line_beats_a_service_address_at_the_top() -> None:
    got = fields(
        [
            (40, 84, "Libre Service Abonnés", 9),
            (40, 95, "75371 Paris Cedex 08", 9),
            *BODY,
            (
                45,
                790,
                "Libre Telecom SAS au capital de 3.441.812 Euros - B 421 938 861 RCS Paris - "
                "Siège social: 8 rue de la Ville 75008 Paris",
                7,
            ),
        ]
    )
    assert got["issuer_name"].value == "Libre Telecom SAS"


def test_the_account_holder_of_the_bank_details_is_the_issuer() -> None:
    got = fields(
        RECIPIENT_TOP_RIGHT
        + BODY
        + [(50, 600, "Virement : BRED BANQUE POPULAIRE – Titulaire du compte : NORDPRESSE", 9)]
    )
    assert got["issuer_name"].value == "NORDPRESSE"
    assert got["issuer_name"].source == "payee"


def test_a_tagline_without_an_address_yields_to_the_name_heading_the_address() -> None:
    got = fields(
        [
            (480, 40, "Global Wholesaler", 10),
            (30, 56, "Azure Interior", 10),
            (30, 70, "4557 De Silva St", 10),
            (30, 84, "Fremont CA 94538", 10),
            (354, 156, "Initech, Mitchell Admin", 10),
            (354, 170, "215 Vine St", 10),
            (354, 184, "Scranton PA 18503", 10),
            *BODY,
            (30, 700, "Payment terms: 15 Days", 10),
        ]
    )
    assert got["issuer_name"].value == "Azure Interior"
    assert got["buyer_name"].value == "Initech, Mitchell Admin"
    assert got["buyer_name"].source == "recipient_block"


def test_a_logo_word_yields_to_the_full_name_it_starts() -> None:
    got = fields(
        [
            (60, 60, "northwind", 26),
            (260, 60, "Northwind Cloud Services", 14),
            *BODY,
        ]
    )
    assert got["issuer_name"].value == "Northwind Cloud Services"


def test_a_row_of_column_headings_is_not_taken_for_the_issuer() -> None:
    got = fields(
        [
            (120, 50, "PAYMENT RECEIPT", 10),
            (42, 80, "Guest Name: Sanjay", 10),
            (46, 110, "Hotel Details", 10),
            (46, 122, "Sunrise Resort Nanganallur", 10),
            (317, 110, "Check In", 10),
            (405, 110, "Check Out", 10),
            (492, 110, "Rooms", 10),
            *BODY,
        ]
    )
    assert got["issuer_name"].value not in ("Rooms", "Check Out")


def test_a_slogan_in_a_larger_size_is_not_the_recipient() -> None:
    got = fields(
        [
            (445, 50, "Bluecool B.V.", 10),
            (445, 64, "Weena 664", 10),
            (445, 78, "3012 CN Rotterdam", 10),
            (45, 68, "Dat betaal ik zelf wel.", 20),
            (45, 104, "Pino Bluebird", 12),
            (45, 118, "Sessamestreet 32", 12),
            (45, 132, "1025 RX Amsterdam", 12),
            *BODY,
        ]
    )
    assert got["issuer_name"].value == "Bluecool B.V."
    assert got["buyer_name"].value == "Pino Bluebird"


def test_a_receipt_copy_mark_is_not_a_buyer() -> None:
    got = fields(
        [
            (200, 50, "GARDENIA BAKERIES (KL) SDN BHD", 10),
            (200, 64, "LOT 3, JALAN PELABUR 23/1", 10),
            (200, 78, "40300 SHAH ALAM", 10),
            (200, 100, "CUSTOMER'S COPY", 10),
            (50, 300, "Total", 10),
            (300, 300, "RM 12.00", 10),
        ]
    )
    assert got["issuer_name"].value == "GARDENIA BAKERIES (KL) SDN BHD"
    assert got["buyer_name"].value is None


def test_a_single_column_receipt_has_no_recipient_block() -> None:
    got = fields(
        [
            (200, 50, "TEO HENG STATIONERY & BOOKS", 10),
            (200, 64, "NO. 53, JALAN BESAR", 10),
            (200, 78, "45600 BATANG BERJUNTAI", 10),
            (230, 100, "Koperasi Pelajar", 10),
            (230, 114, "12 Jalan Sekolah", 10),
            (50, 300, "Total", 10),
            (300, 300, "RM 12.00", 10),
        ]
    )
    assert got["issuer_name"].value == "TEO HENG STATIONERY & BOOKS"
    assert got["buyer_name"].value is None


def test_the_buyers_own_vat_number_does_not_name_the_issuer() -> None:
    got = fields(
        RECIPIENT_TOP_RIGHT
        + BODY
        + [
            (38, 760, "STRATEGIC CORP", 9),
            (38, 772, "Uw BTW nummer: NL00333599698", 9),
        ]
    )
    assert got["issuer_name"].value != "STRATEGIC CORP"


def test_the_window_under_a_one_line_sender_address_is_the_recipient() -> None:
    got = fields(
        [
            (65, 141, "Hostwerk AG - Uferweg 40-42 - D-63571 Gelnhausen", 7),
            (65, 204, "Lumen Labs Ltd.", 9),
            (65, 216, "93B Sai Yu Chung", 9),
            (65, 228, "Yuen Long, N.T.", 9),
            *BODY,
            (65, 700, "Zahlbar innerhalb von 14 Tagen", 9),
        ]
    )
    assert got["issuer_name"].value == "Hostwerk AG"
    assert got["buyer_name"].value == "Lumen Labs Ltd."


def test_a_registration_number_in_brackets_is_not_the_issuer_address() -> None:
    got = fields(
        [
            (150, 50, "GARDENIA BAKERIES (KL) SDN BHD (139386 X)", 10),
            (150, 64, "LOT 3, JALAN PELABUR 23/1,", 10),
            (150, 78, "40300 SHAH ALAM, SELANGOR.", 10),
            (50, 300, "Total", 10),
            (300, 300, "RM 12.00", 10),
        ]
    )
    assert got["issuer_address"].value == "LOT 3, JALAN PELABUR 23/1, 40300 SHAH ALAM, SELANGOR."
    assert got["buyer_name"].value is None
