"""A marketplace's invoice for one of its sellers is filed under the marketplace's name; a
shop's own invoice keeps its letterhead whatever platform the order came through."""

from __future__ import annotations

from dataclasses import replace

import pymupdf

from mmflow.tasks.extract import extract_invoice
from mmflow.tasks.models import DocumentText, FieldValue
from mmflow.tasks.samples import SPECS, Party, invoice_pdf
from mmflow.tasks.textlayer import read_text_layer

NORTHWIND = SPECS["northwind-invoice"]
BRENNER = SPECS["brenner-rechnung-scan"]
# The platform's logo stands after "Ordered through:"; its web name is the line under it.
ORDERED_THROUGH_LOGO = (
    "Ordered through:",
    "Shopwise.co.uk Customer Care: 0800 123 4567 | www.shopwise.co.uk/help",
)


def issuer_name(spec_issuer: Party, payment: tuple[str, ...], german: bool = False) -> FieldValue:
    """The issuer name read from a generated invoice with this heading and footer."""
    base = BRENNER if german else NORTHWIND
    pdf = invoice_pdf(replace(base, issuer=spec_issuer, payment=payment))
    with pymupdf.open(stream=pdf, filetype="pdf") as doc:
        text = DocumentText(pages=[read_text_layer(p, i + 1) for i, p in enumerate(doc)])
    return extract_invoice(text).fields["issuer_name"]


def test_a_seller_named_on_a_marketplace_invoice_yields_to_the_marketplace() -> None:
    # the heading names the merchant under a seller label, as platform invoices print it
    seller = replace(NORTHWIND.issuer, name="Sold by: Harbour Gadgets Ltd")
    got = issuer_name(seller, ORDERED_THROUGH_LOGO)
    assert got.value == "Shopwise"
    assert got.source == "marketplace"
    assert got.evidence == "Shopwise.co.uk"


def test_a_german_marketplace_named_after_its_phrase_is_the_issuer() -> None:
    seller = replace(BRENNER.issuer, name="Verkäufer: Elbe Technik GmbH")
    payment = ("Bestellt über Marktplatz24 - Kundenservice: hilfe@marktplatz24.de",)
    assert issuer_name(seller, payment, german=True).value == "Marktplatz24"


def test_a_shops_own_letterhead_keeps_the_issuer_whatever_platform_the_order_came_through() -> None:
    got = issuer_name(NORTHWIND.issuer, ORDERED_THROUGH_LOGO)
    assert got.value == "Northwind Office Supplies Ltd"


def test_a_channel_without_a_web_address_is_not_a_marketplace() -> None:
    seller = replace(NORTHWIND.issuer, name="Sold by: Harbour Gadgets Ltd")
    got = issuer_name(seller, ("Ordered through: Telephone Sales", "Call 0800 123 4567"))
    assert got.value == "Harbour Gadgets Ltd"
