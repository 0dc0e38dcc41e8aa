"""The label lexicon: what invoices and receipts print beside each field, in five languages.

Phrases are written in folded form (lower case, accents removed, `°`/`º` read as `o`); a space
in a phrase matches any run of spaces and punctuation, so "sub total" also finds "Sub-Total:" and
"subtotal". Each phrase has a weight: specific labels ("Total TTC", "Rechnungsnummer") outrank
generic ones ("Total", "Date"). Labels of the `OTHER` field name things that are *not* our fields
("Order date", "Change", "Total qty"); matching them stops a longer phrase from being misread
(the longest match wins) and stops a value search running past them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

OTHER = "_other"
SHIP_TO = "_ship_to"
ROUNDING = "_rounding"

_NO = r"(?:no|nr|n|number|num|nummer|numero|#|id)"

_LEXICON: dict[str, list[tuple[str, float]]] = {
    "invoice_number": [
        (rf"invoice {_NO}", 1.0),
        (rf"inv {_NO}", 0.9),
        (rf"tax invoice {_NO}", 1.0),
        (rf"rechnungs? {_NO}", 1.0),
        (r"rechnungsnr|rechnungsnummer", 1.0),
        (rf"facture {_NO}", 1.0),
        (r"(?:no|numero|num) (?:de )?facture", 1.0),
        (rf"factuur {_NO}|factuurnummer|factuurnr", 1.0),
        (rf"factura {_NO}|(?:no|numero|num) (?:de )?factura", 1.0),
        (rf"(?:bill|receipt|cash bill|document|doc|belegs?|slip|ticket) {_NO}", 0.8),
        (rf"invois {_NO}|{_NO} invois", 1.0),
        (rf"faktura {_NO}", 1.0),
        (r"invoice|rechnung|facture|factuur|factura|invois|faktura", 0.6),
        (r"booking (?:id|no|number|reference)", 0.5),
    ],
    "issue_date": [
        (r"invoice date|date of (?:invoice|issue)|issue date|issued (?:on)?|date issued", 1.0),
        (r"(?:billing|bill|document|receipt|transaction|tax point) date", 0.9),
        (r"rechnungsdatum|rechnungs datum|belegdatum|ausstellungsdatum", 1.0),
        (r"date (?:de (?:la )?)?facture|date d.?emission|date de facturation", 1.0),
        (r"factuur ?datum|datum factuur", 1.0),
        (r"fecha (?:de )?(?:la )?(?:factura|emision|expedicion)", 1.0),
        (r"data wystawienia|tarikh", 1.0),
        (r"date|datum|fecha|dated|dd", 0.7),
    ],
    "due_date": [
        (r"due date|payment due|date due|due by|pay by|payable by|payment date", 1.0),
        (r"f(?:a|ae)llig(?:keitsdatum|keit| am)?|zahlungsziel|zahlbar bis", 1.0),
        (r"(?:date d.?)?echeance|date limite de (?:paiement|reglement)|a regler avant", 1.0),
        (r"vervaldatum|vervaldag|uiterste betaaldatum|te betalen voor", 1.0),
        (r"(?:fecha (?:de )?)?vencimiento|fecha limite de pago", 1.0),
    ],
    "total": [
        (r"grand total|total amount due|amount due|total due|balance due|total to pay", 1.0),
        (r"amount payable|total payable|invoice total|total invoice|nett? total|final total", 1.0),
        (
            r"total (?:rm |\$ )?(?:incl|inc|inkl|including|inclusive)\w*(?: of)?"
            r"(?: (?:vat|tax|gst|sst|btw|tva|mwst|ust|iva))?",
            1.0,
        ),
        (r"total \(?(?:vat|tax|gst|sst) incl\w*\)?", 1.0),
        (r"total (?:sales|amt|amount) (?:incl|inc|inclusive)\w*(?: of)?(?: gst| vat| tax)?", 1.0),
        (r"(?:takeout |rounded |round(?:ing)? )?total (?:rounded)?", 0.8),
        (r"rounded total|total rounded|total amount|total sales|total amt payable|total amt", 0.9),
        (r"total ttc|montant ttc|net a payer|somme a payer|total a payer|montant total", 1.0),
        (r"montant du prelevement", 0.8),
        (r"gesamtbetrag|rechnungsbetrag|endbetrag|gesamtsumme|zahlbetrag|zu zahlen", 1.0),
        (r"(?:rechnungs)?summe|gesamt|brutto(?:betrag)?", 0.7),
        (r"totaal(?:bedrag)?|factuur ?totaal|te betalen|totaal incl\w* btw", 1.0),
        (r"importe total|total a pagar|total factura|total general", 1.0),
        (r"razem|naleznosc ogolem", 0.8),
        (r"jumlah(?: besar| bersih| perlu dibayar)?", 0.9),  # Malay receipts
        (r"total", 0.8),
    ],
    "subtotal": [
        (r"sub ?total|sous total|zwischensumme|subtotaal|subtotal", 1.0),
        (r"net amount|amount (?:excl|ex)\w*", 1.0),
        (
            r"total (?:excl|exkl|excluding|ex|net|before tax)\w*"
            r"(?: (?:vat|tax|gst|sst|btw|tva|mwst|ust|iva))?",
            1.0,
        ),
        (r"total sales \(?(?:excl|excluding|ex)\w*(?: of)?(?: gst| vat| tax)?", 1.0),
        (r"total (?:\d+% )?supplies \(?(?:excl|ex)\w*(?: gst)?", 1.0),
        (r"total ht|montant (?:eur )?ht|total hors tax\w*|hors tax\w*|base ht", 1.0),
        (r"netto(?:betrag|summe)?|summe netto|gesamt netto|zwischensumme netto", 0.9),
        (r"exclusief btw|excl\w* btw|totaal excl\w*(?: btw)?|bedrag excl\w*|grondslag", 1.0),
        (r"base imponible|importe neto|subtotal", 1.0),
    ],
    "tax_amount": [
        (
            r"\(?total includ\w* (?:\d+ ?% )?(?:gst|vat|tax)? ?(?:@ ?)?(?:\d+ ?%)?"
            r"(?: gst| vat| tax)?",
            0.9,
        ),
        (r"total (?:tax|vat|gst|sst|tva|btw|mwst|iva)|tax amount|vat amount|gst amount", 1.0),
        (r"(?:sales )?tax|vat|gst|sst|hst|tva|montant tva|mwst|ust|umsatzsteuer", 0.9),
        (r"mehrwertsteuer|btw(?: bedrag)?|iva|cuota iva|importe iva|impuesto|cukai", 0.9),
    ],
    "buyer_name": [
        (r"bill(?:ed)? to|invoice to|sold to|customer(?: name)?|client|guest name", 1.0),
        (r"kunde|rechnungsempfanger|rechnungsadresse|empfanger", 1.0),
        (r"facture a|adresse de facturation|nom de l.?abonne|destinataire", 1.0),
        (r"klant|factuuradres|factuur adres", 1.0),
        (r"cliente|facturar a", 1.0),
        (r"billing address|nabywca|attn", 0.8),
    ],
    "issuer_name": [
        (r"sold by|seller|vendor|supplier|service provider|from|issued by", 1.0),
        (r"verkaufer|lieferant|rechnungssteller|vendeur|fournisseur|emetteur", 1.0),
        (r"leverancier|verkoper|proveedor|emisor|vendedor|sprzedawca", 1.0),
    ],
    ROUNDING: [
        (r"rounding(?: adj\w*)?(?: rm)?|round(?:ing)? adj\w*|adj(?:ustment)? rounding", 1.0)
    ],
    SHIP_TO: [
        (r"ship(?:ped)? to|deliver(?:ed)? to|shipping address|delivery address|afleveradres", 1.0),
        (
            r"lieferadresse|lieferanschrift|adresse de livraison|livre a"
            r"|direccion de (?:envio|entrega)",
            1.0,
        ),
    ],
    OTHER: [
        (r"(?:customer|merchant|client|shop)(?:.?s)? copy", 1.0),  # receipt copy marks
        (r"customer (?:care|service|support)|service clients?|klantenservice|kundenservice", 1.0),
        (r"(?:ohne|excl\w*|exkl\w*|inkl\w*|zzgl\.?|incl\w*) (?:mwst|ust|btw|vat|tva|gst)", 0.5),
        (r"bank(?: name| account|verbindung)?|account|ifsc|konto", 0.5),
        (r"(?:order|delivery|ship(?:ping)?|purchase|start|end|print(?:ed)?) date", 1.0),
        (r"order(?: date)?|orderdatum|bestelldatum|auftragsdatum|lieferdatum|leverdatum", 1.0),
        (r"date de (?:commande|livraison)|fecha de (?:pedido|entrega)|check ?in|check ?out", 1.0),
        (r"(?:billing )?period|expiry|card expiry|valid until|prelevement a partir du", 1.0),
        (r"total (?:qty|quantity|items?|item\(s\)|quantity\(s\)|disc\w*|savings?|saving)", 1.0),
        (r"item\(?s\)?|qty\(?s\)?|quantity|cash(?: tendered)?|tendered|change(?: due)?", 1.0),
        (r"discount|savings?|balance(?: \(? if any \)?)?", 1.0),
        (r"(?:vat|tax|gst|btw|tva|ust|mwst) ?(?:id|reg\w*|no|nr|number|nummer)\w*", 1.0),
        (r"ustid|ust-?id(?:nr)?|steuer ?nr|steuernummer|siret|siren|kvk|iban|bic|swift", 1.0),
        (
            r"(?:customer|account|klant|kunden?|client|order|contract|member(?: card)?)"
            r" ?(?:no|nr|number|nummer|id|#)",
            1.0,
        ),
        (r"klantnummer|kundennummer|kundennr|ordernummer|numero de dossier|id.?client", 1.0),
        (r"tax invoice|simplified tax invoice|payment (?:terms|mode|method)", 0.5),
        (r"tel|phone|fax|email|e-mail", 0.5),
    ],
}


@dataclass(frozen=True)
class LabelMatch:
    field: str
    weight: float
    start: int
    end: int


def _compile(phrase: str) -> re.Pattern[str]:
    body = phrase.replace(" ", r"[\s.:\-/()]*")
    return re.compile(rf"(?<![a-z0-9_])(?:{body})(?![a-z_])")


_COMPILED: list[tuple[str, float, re.Pattern[str]]] = [
    (field, weight, _compile(phrase))
    for field, phrases in _LEXICON.items()
    for phrase, weight in phrases
]


def match_labels(folded: str) -> list[LabelMatch]:
    """Non-overlapping label matches in folded text, longest first, left to right."""
    return list(_match_labels(folded))


@lru_cache(maxsize=8192)
def _match_labels(folded: str) -> tuple[LabelMatch, ...]:
    # one segment is asked about many times (pairing, tables, issuer): match it once
    candidates: list[LabelMatch] = []
    for field, weight, pattern in _COMPILED:
        for match in pattern.finditer(folded):
            end = match.end()
            while end > match.start() and folded[end - 1] in " .:-_/(":
                end -= 1  # keep trailing punctuation out of the label's span
            if end > match.start():
                candidates.append(LabelMatch(field, weight, match.start(), end))
    candidates.sort(key=lambda m: (-(m.end - m.start), -m.weight, m.start))
    chosen: list[LabelMatch] = []
    for cand in candidates:
        if all(cand.end <= c.start or cand.start >= c.end for c in chosen):
            chosen.append(cand)
    return tuple(sorted(chosen, key=lambda m: m.start))
