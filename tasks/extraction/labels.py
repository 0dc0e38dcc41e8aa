"""The label lexicon: what invoices and receipts print beside each field, in eight languages.

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
TAX_ID = "_tax_id"  # a VAT/tax ID label: whose ID it is depends on where it stands
BUYER_TAX_ID = "_buyer_tax_id"  # a label naming the buyer's own ID ("Your VAT no.")
IBAN = "iban"
BIC = "bic"

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
        (rf"faktura(?: vat)? {_NO}|(?:numer|nr) faktury", 1.0),
        (rf"fattura {_NO}|(?:numero|no|n) (?:della )?fattura", 1.0),
        # credit notes name their own number after their own title
        (rf"credit (?:note|memo) {_NO}|credit note number", 1.0),
        (rf"gutschrifts? {_NO}|gutschriftsnummer|gutschriftsnr|korrektur {_NO}", 1.0),
        (rf"(?:no|numero|num) d.?avoir|avoir {_NO}", 1.0),
        (rf"creditnota ?(?:nummer|{_NO})|creditnotanummer|creditfactuur ?(?:nummer|{_NO})", 1.0),
        (r"(?:no|numero|num) (?:de )?(?:(?:la )?rectificativa|abono|nota de credito)", 1.0),
        (rf"nota di credito {_NO}|numero (?:della )?nota di credito", 1.0),
        (rf"faktura korygujaca {_NO}|(?:numer|nr) korekty|korekta {_NO}", 1.0),
        (rf"(?:documento|document) {_NO}|{_NO} documento", 0.8),
        (r"invoice|rechnung|facture|factuur|factura|invois|faktura|fattura", 0.6),
        (r"booking (?:id|no|number|reference)", 0.5),
    ],
    "issue_date": [
        (r"invoice date|date of (?:invoice|issue)|issue date|issued (?:on)?|date issued", 1.0),
        (r"(?:billing|bill|document|receipt|transaction|tax point) date", 0.9),
        (r"rechnungsdatum|rechnungs datum|belegdatum|ausstellungsdatum", 1.0),
        (r"date (?:de (?:la )?)?facture|date d.?emission|date de facturation", 1.0),
        (r"factuur ?datum|datum factuur", 1.0),
        (r"fecha (?:de )?(?:la )?(?:factura|emision|expedicion)", 1.0),
        (r"data wystawienia|data faktury|tarikh", 1.0),
        (r"data (?:della )?fattura|data (?:del )?documento|data (?:di )?emissione", 1.0),
        (r"date|datum|fecha|dated|dd|data", 0.7),
    ],
    "due_date": [
        (r"due date|payment due|date due|due by|pay by|payable by|payment date", 1.0),
        # "Zahlungsziel" names a date or a term ("14 Tage"): a due date only before a date
        (
            r"f(?:a|ae)llig(?:keitsdatum|keit| am)?|zahlungsziel(?=\W*\d{1,2}[./-]\d)|zahlbar bis",
            1.0,
        ),
        (r"(?:date d.?)?echeance|date limite de (?:paiement|reglement)|a regler avant", 1.0),
        (r"vervaldatum|vervaldag|uiterste betaaldatum|te betalen voor", 1.0),
        (r"(?:fecha (?:de )?)?vencimiento|fecha limite de pago", 1.0),
        (r"(?:data (?:di )?)?scadenza(?: (?:del )?pagamento)?", 1.0),
        (r"termin (?:platnosci|zaplaty)|platne do|zaplata do", 1.0),
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
        (r"bruttobetrag|gesamt brutto|summe brutto|betrag brutto|gutschriftsbetrag", 1.0),
        (r"(?:rechnungs)?summe|gesamt|brutto", 0.7),
        (r"totaal(?:bedrag)?|factuur ?totaal|te betalen|totaal incl\w* btw", 1.0),
        (r"importe total|total a pagar|total factura|total general", 1.0),
        (r"razem brutto|wartosc brutto|(?:kwota )?do zaplaty|suma brutto", 1.0),
        (r"totale (?:documento|fattura|da pagare|complessivo|dovuto)|importo totale", 1.0),
        (r"totale|razem|naleznosc ogolem", 0.8),
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
        (r"(?:totale )?imponibile|totale netto", 1.0),
        (r"razem netto|suma netto|wartosc netto", 1.0),
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
        (r"totale iva|imposta|kwota vat|podatek vat|razem vat", 0.9),
    ],
    "buyer_name": [
        (r"bill(?:ed)? to|invoice to|sold to|customer(?: name)?|client|guest name", 1.0),
        (r"kunde|rechnungsempfanger|rechnungsadresse|empfanger", 1.0),
        (r"facture a|adresse de facturation|nom de l.?abonne|destinataire", 1.0),
        (r"klant|factuuradres|factuur adres", 1.0),
        (r"cliente|facturar a|datos del cliente", 1.0),
        (r"spett\.?le|spettabile|destinatario|intestatario|nabywca|odbiorca(?: faktury)?", 1.0),
        (r"billing address|attn|aan", 0.8),
    ],
    "issuer_name": [
        (r"sold by|seller|vendor|supplier|service provider|from|issued by", 1.0),
        (r"verkaufer|lieferant|rechnungssteller|vendeur|fournisseur|emetteur", 1.0),
        (r"leverancier|verkoper|proveedor|emisor|vendedor|sprzedawca", 1.0),
        (r"fornitore|cedente|venditore|emittente|wystawca", 1.0),
    ],
    # The added fields (docs/contracts.md). A bare tax ID label is the issuer's unless it stands in
    # the buyer's block (`tasks.extraction.identifiers`); some labels name the buyer's own.
    TAX_ID: [
        (
            r"(?:vat|tax|gst|btw|tva|ust|mwst|iva|moms|mva) ?(?:id|reg\w*|no|nr|number|nummer)\w*",
            1.0,
        ),
        (r"ust-?id\w*|ust\.? ?id\w*|umsatzsteuer-?id\w*|uid(?:-?nr| nummer)?", 1.0),
        (r"(?:no|numero) (?:de )?tva(?: intracom\w*)?|tva intracom\w*|identifiant tva", 1.0),
        (r"btw-?(?:nummer|nr|id)|btw ?identificatienummer|omzetbelastingnummer", 1.0),
        (r"nif(?:-iva)?|cif|nif/cif|n\.?i\.?f\.?|c\.?i\.?f\.?", 0.9),
        (r"p\.? ?iva|partita iva|codice fiscale|nip", 0.9),
        (r"gstin|gst reg\w* no|abn|org\.? ?nr|steuernummer|steuer-?nr", 0.8),
        (r"vat|tva|btw|iva", 0.4),  # a bare tax word before an ID-shaped value
    ],
    BUYER_TAX_ID: [
        (
            # a space matches any run of spaces and punctuation, none included (no " ?": a
            # lazy gap would end the match before the optional "number")
            r"(?:your|uw|ihre?|votre|su|vostra|customer|client|kunden?) "
            r"(?:vat|tax|btw|tva|ust|mwst|iva|nif|cif|gst) "
            r"(?:id|reg\w*|no|nr|number|nummer|n)?\w*",
            1.0,
        ),
        (
            r"(?:vat|tax|btw|tva|ust|mwst|nif|cif|p\.? ?iva|partita iva|nip)[\w-]* "
            r"(?:no |nr |number |nummer |id )?(?:of the |del |du |des )?"
            r"(?:customer|client|cliente|klant|kunden?|nabywcy|leistungsempfangers|buyer)",
            1.0,
        ),
        (r"(?:n|no|numero) (?:de )?tva (?:du )?client|votre (?:no|numero) (?:de )?tva", 1.0),
    ],
    IBAN: [(r"iban(?: code| nr| number)?|rekeningnummer|numer rachunku|nr rachunku", 1.0)],
    BIC: [(r"bic(?:[/ -]?swift)?(?: code)?|swift(?:[/ -]?bic)?(?: code)?", 1.0)],
    "purchase_order": [
        (r"purchase order(?: no| number| #)?|p\.?o\.?(?: no| number| #|-?nummer)|your order", 1.0),
        (r"bestellnummer|bestell-?nr|ihre bestellung|auftragsnummer|ihr auftrag", 1.0),
        (r"bon de commande|(?:no|numero) de commande|reference commande|votre commande", 1.0),
        (r"inkoopordernummer|uw ordernummer|uw order|inkooporder", 1.0),
        (r"(?:no|numero) de pedido|orden de compra|pedido", 1.0),
        (rf"ordine {_NO}|rif\.? ordine|numero (?:d.)?ordine|vs\.? ordine", 1.0),
        (rf"(?:nr|numer) zamowienia|zamowienie {_NO}", 1.0),
        (r"(?:customer )?order (?:no|nr|number|#|id)|ordernummer|order", 0.6),
    ],
    "payment_terms": [
        (r"payment terms|terms of payment|terms(?= ?:)", 1.0),
        (r"zahlungsbedingungen|zahlungsziel|zahlungskonditionen", 1.0),
        (r"conditions de (?:paiement|reglement)|modalites de (?:paiement|reglement)", 1.0),
        (r"betalingsvoorwaarden|betalingstermijn|betaaltermijn", 1.0),
        (r"condiciones de pago|forma de pago|terminos de pago", 1.0),
        (r"(?:condizioni|modalita|termini) di pagamento", 1.0),
        (r"(?:sposob|warunki|forma) platnosci", 1.0),
    ],
    "referenced_invoice": [
        (r"(?:relates|related|refers|referring|relating) to invoice|original invoice", 1.0),
        (r"(?:invoice reference|reference invoice|corrected invoice|credit for invoice)", 1.0),
        (r"bezug(?:nehmend)?(?: auf)? rechnung|ursprungliche rechnung|korrektur zu rechnung", 1.0),
        (r"zu rechnung|storno (?:zu|der) rechnung|rechnungskorrektur zu", 1.0),
        (r"facture (?:d.?origine|initiale|concernee|rectifiee)|se rapporte a la facture", 1.0),
        (r"betreft factuur|oorspronkelijke factuur|correctie op factuur|originele factuur", 1.0),
        (r"factura (?:rectificada|original|de origen)|rectifica a la factura", 1.0),
        (r"rif\.? fattura|fattura (?:di riferimento|originale|stornata)|storno fattura", 1.0),
        (rf"dotyczy faktury|faktura korygowana|korekta faktury(?: {_NO})?", 1.0),
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
        (r"bank(?: name| account|verbindung)?|account|ifsc|konto|blz|sort code", 0.5),
        (r"(?:order|delivery|ship(?:ping)?|purchase|start|end|print(?:ed)?) date", 1.0),
        (r"order(?: date)?|orderdatum|bestelldatum|auftragsdatum|lieferdatum|leverdatum", 1.0),
        (r"date de (?:commande|livraison)|fecha de (?:pedido|entrega)|check ?in|check ?out", 1.0),
        (r"(?:billing )?period|expiry|card expiry|valid until|prelevement a partir du", 1.0),
        (r"total (?:qty|quantity|items?|item\(s\)|quantity\(s\)|disc\w*|savings?|saving)", 1.0),
        (r"item\(?s\)?|qty\(?s\)?|quantity|cash(?: tendered)?|tendered|change(?: due)?", 1.0),
        (r"discount|savings?|balance(?: \(? if any \)?)?", 1.0),
        (r"siret|siren|kvk|rcs|hrb|regon|krs|rea|cin|company (?:reg\w*|no|number)", 1.0),
        (
            r"(?:customer|account|klant|kunden?|client|order|contract|member(?: card)?)"
            r" ?(?:no|nr|number|nummer|id|#)",
            1.0,
        ),
        (r"klantnummer|kundennummer|kundennr|ordernummer|numero de dossier|id.?client", 1.0),
        (r"tax invoice|simplified tax invoice|payment (?:mode|method)", 0.5),
        (r"(?:order|delivery|lieferschein|bon de livraison|pakbon) (?:date|datum)", 1.0),
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
