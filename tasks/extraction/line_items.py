"""Line-item tables from word geometry: a header row names the columns, rows below fill them.

A header row is a row where at least two column roles are recognised (description, quantity,
unit price, amount) and one of them carries money. Its words give each column an x-position;
every following row whose amount sits under the amount column is an item, text-only rows in the
description column continue the item above, and the table ends at the grand-total row or at a
wide vertical gap. A header repeated on the next page continues the table there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from mmflow.tasks.extraction.labels import match_labels
from mmflow.tasks.extraction.layout import Row
from mmflow.tasks.extraction.parsing import find_amounts
from mmflow.tasks.extraction.text import fold
from mmflow.tasks.models import BBox, LineItem

_ROLE_WORDS: dict[str, set[str]] = {
    "description": set(
        [
            "description",
            "desc",
            "item",
            "items",
            "article",
            "artikel",
            "product",
            "title",
            "designation",
            "beschreibung",
            "bezeichnung",
            "leistung",
            "omschrijving",
            "descripcion",
            "concepto",
            "articulo",
            "producto",
            "nazwa",
            "particulars",
            "service",
            "code/desc",
        ]
    ),
    "quantity": set(
        [
            "qty",
            "quantity",
            "menge",
            "anzahl",
            "quantite",
            "qte",
            "nombre",
            "aantal",
            "hoeveelheid",
            "cantidad",
            "cant",
            "ilosc",
            "units",
            "hours",
            "stk",
        ]
    ),
    "unit_price": set(
        [
            "price",
            "rate",
            "u/p",
            "s/price",
            "preis",
            "einzelpreis",
            "vk-preis",
            "prix",
            "p.u.",
            "pu",
            "prijs",
            "precio",
            "cena",
            "unit_price",
        ]
    ),
    "amount": set(
        [
            "amount",
            "total",
            "betrag",
            "gesamtpreis",
            "zeilenbetrag",
            "gesamt",
            "montant",
            "bedrag",
            "importe",
            "amt",
            "wartosc",
        ]
    ),
}


@dataclass
class Column:
    role: str
    x0: float
    x1: float

    @property
    def centre(self) -> float:
        return (self.x0 + self.x1) / 2


def _roles_of(row: Row) -> list[Column]:
    columns: list[Column] = []
    for segment in row.segments:
        for word in segment.words:
            token = fold(word.text).strip(".:()%*")
            for role, words in _ROLE_WORDS.items():
                if token in words or token.rstrip("s") in words:
                    columns.append(Column(role, word.bbox[0], word.bbox[2]))
                    break
    return columns


def _header_columns(row: Row) -> dict[str, Column] | None:
    columns = _roles_of(row)
    roles = {c.role for c in columns}
    if len(roles) < 2 or not roles & {"amount", "unit_price"}:
        return None
    if not roles & {"description", "quantity"}:
        return None
    chosen: dict[str, Column] = {}
    for col in columns:
        if col.role == "description" and "description" in chosen:
            continue
        if col.role in ("amount", "unit_price") and col.role in chosen:
            if col.x0 > chosen[col.role].x0:
                # the rightmost money column of a kind is the one that adds up
                if col.role == "unit_price" and "amount" not in chosen:
                    chosen["amount"] = col
                    continue
                chosen[col.role] = col
            continue
        chosen[col.role] = col
    if "amount" not in chosen:
        chosen["amount"] = chosen.pop("unit_price")
    return chosen


def is_table_header(row: Row) -> bool:
    return _header_columns(row) is not None


def _is_totals_row(row: Row) -> str | None:
    """'total' for the grand-total row, another field name for other summary rows, else None.

    A row is a summary row when a segment starts with an amount label ("Subtotal", "Total",
    "MwSt.") or its first segment carries a total label ("TakeOut Total (incl GST)"); receipt
    lines such as "Cash", "Change", "Rounding" are summary rows too.
    """
    for position, segment in enumerate(row.segments):
        for match in match_labels(segment.folded):
            if match.field not in ("total", "subtotal", "tax_amount") or match.weight < 0.8:
                continue
            if match.start <= 2 or (position == 0 and match.field == "total"):
                return match.field
            if position == 0 and match.field == "tax_amount" and _PERCENT.search(segment.text):
                return match.field  # "zzgl. 19 % MwSt.", "plus 20% VAT": a tax row
    if _SUMMARY_ROW.match(row.segments[0].folded.lstrip(" *-")):
        return "summary"
    return None


_SUMMARY_ROW = re.compile(
    r"(?:cash|change|tender\w*|rounding|round(?:ing)? adj\w*|discount|savings?|paid|payment|"
    r"balance|item\(s\)|qty\(s\)|items? count|(?:gst|tax|vat) summary|total (?:qty|items?|"
    r"quantity|saving|discount))(?![a-z])"
)


_NUMBER = re.compile(r"^-?\d+(?:[.,]\d+)?")
_PERCENT = re.compile(r"\d\s?%")
# a cell holding only a number, money or a percentage ("1", "€ 4,24", "21%", "1.00 kg")
_NUMERIC_CELL = re.compile(r"[\s€$£₹¥RMs.*%-]*-?[\d.,]+\s*(?:%|[A-Za-z€$£]{0,5})[\s*]*")


def _quantity(row: Row, column: Column) -> Decimal | None:
    best: tuple[float, Decimal] | None = None
    for segment in row.segments:
        for word in segment.words:
            match = _NUMBER.match(word.text)
            if not match or not (column.x0 - 15 < word.bbox[2] and word.bbox[0] < column.x1 + 15):
                continue
            centre = (word.bbox[0] + word.bbox[2]) / 2
            distance = abs(centre - column.centre)
            try:
                value = Decimal(match.group(0).replace(",", "."))
            except InvalidOperation:
                continue
            if best is None or distance < best[0]:
                best = (distance, value)
    return best[1] if best else None


def detect_line_items(rows: list[Row], decimal_sep: str) -> list[LineItem]:
    """Line items of every table on the pages, in reading order."""
    items: list[LineItem] = []
    index = 0
    while index < len(rows):
        columns = _header_columns(rows[index])
        if columns is None:
            index += 1
            continue
        index = _read_table(rows, index, columns, decimal_sep, items)
    return items


@dataclass
class _Item:
    """An item being read: its own description line, and text lines read under it."""

    item: LineItem
    text: str  # the item row's own text
    bottom: float  # of the item row
    continuation: list[tuple[str, Row]] = field(default_factory=list)

    def describe(self) -> None:
        lines = [self.text] if self.text else []
        self.item.description = "\n".join(lines + [text for text, _ in self.continuation])

    def last_line_belongs_below(self, row: Row) -> bool:
        """Whether the last continuation line sits nearer to `row` than to this item's row."""
        if not self.text or not self.continuation:
            return False
        line = self.continuation[-1][1]
        return row.bbox[1] - line.bbox[3] < line.bbox[1] - self.bottom


def _read_table(
    rows: list[Row],
    header_index: int,
    columns: dict[str, Column],
    decimal_sep: str,
    items: list[LineItem],
) -> int:
    """Read item rows under one header; returns the index of the first row after the table.

    Text-only rows continue the item above ("Acme beeswax" under "Beeswax XL"). An item row
    without text of its own takes its description from the text row just above it: receipts
    print the description first and the quantity-and-price line under it.
    """
    header = rows[header_index]
    amount_col = columns["amount"]
    money_cols = [c for c in columns.values() if c.role in ("amount", "unit_price")]
    numeric_left = min(c.x0 for c in columns.values() if c.role != "description")
    desc = columns.get("description")
    desc_right = min(
        [c.x0 for c in columns.values() if desc is not None and c.x0 > desc.x1] or [1e9]
    )
    last_bottom = header.bbox[3]
    line_height = header.height
    current: _Item | None = None
    pending: list[str] = []  # text rows read while no item was open
    index = header_index + 1
    while index < len(rows):
        row = rows[index]
        if row.page != header.page:
            break  # a repeated header on the next page starts the next table
        if row.bbox[1] - last_bottom > 4 * max(line_height, row.height) and current is not None:
            break
        if _header_columns(row) is not None:
            break
        totals = _is_totals_row(row)
        if totals == "total" and (items or current is not None):
            index += 1
            break
        if totals is not None:
            index += 1
            current, pending = None, []
            continue
        cells = _money_cells(row, money_cols, columns.get("quantity"), numeric_left, decimal_sep)
        line_amounts = [c for c in cells if c.column is amount_col]
        texts = [
            s
            for s in row.segments
            if (
                (desc is not None and desc.x0 - 20 <= s.bbox[0] < desc_right)
                or s.bbox[2] <= numeric_left
            )
            and not _NUMERIC_CELL.fullmatch(s.text)
        ]
        text = " ".join(s.text for s in texts).strip()
        if line_amounts:
            if not text and pending:
                text = pending[-1]
            elif not text and current is not None and current.last_line_belongs_below(row):
                text = current.continuation.pop()[0]  # this item's line, not a continuation
                current.describe()
            if not text:
                text = " ".join(
                    s.text for s in row.segments if not find_amounts(s.text, decimal_sep)
                )
            item = _line_item(row, columns, cells, line_amounts[-1], text)
            current = _Item(item, text, row.bbox[3])
            items.append(item)
            pending = []
            last_bottom = row.bbox[3]
        elif text and current is not None and row.bbox[1] - last_bottom < 2 * line_height:
            current.continuation.append((text, row))
            current.describe()
            last_bottom = row.bbox[3]
        elif text and current is None and not cells:
            pending.append(text)
            last_bottom = row.bbox[3]
        index += 1
    return index


def _line_item(
    row: Row, columns: dict[str, Column], cells: list[_MoneyCell], amount: _MoneyCell, text: str
) -> LineItem:
    prices = [c for c in cells if c.column is columns.get("unit_price")]
    quantity = _quantity(row, columns["quantity"]) if "quantity" in columns else None
    unit_price = prices[0].value if prices else None
    consistent = (
        quantity is not None
        and unit_price is not None
        and abs(quantity * unit_price - amount.value) <= Decimal("0.01")
    )
    return LineItem(
        description=text,
        quantity=quantity,
        unit_price=unit_price,
        amount=amount.value,
        page=row.page,
        bbox=row.bbox,  # the evidence is the whole row, so its box is the row's
        evidence=row.text,
        confidence=0.8 if consistent else 0.6,
    )


@dataclass
class _MoneyCell:
    column: Column
    value: Decimal
    bbox: BBox


def _money_cells(
    row: Row,
    money_cols: list[Column],
    quantity: Column | None,
    numeric_left: float,
    decimal_sep: str,
) -> list[_MoneyCell]:
    """Money amounts of a row, each assigned to the nearest money column by its centre.

    A number under the quantity header ("1.00 kg") is a quantity, and one inside the
    description ("Thuiskopie €3.50") is text, however money-like they look.
    """
    cells: list[_MoneyCell] = []
    for segment in row.segments:
        for mention in find_amounts(segment.text, decimal_sep):
            box = segment.span_bbox(mention.start, mention.end)
            if box[2] < numeric_left - 5:
                continue
            under_quantity = (
                quantity is not None and box[0] < quantity.x1 + 5 and box[2] > quantity.x0 - 5
            )
            if under_quantity and not mention.has_currency:
                continue
            centre = (box[0] + box[2]) / 2
            nearest = min(money_cols, key=lambda c: abs(c.centre - centre))
            cells.append(_MoneyCell(nearest, mention.value, box))
    return cells


def line_total(items: list[LineItem]) -> Decimal | None:
    amounts = [i.amount for i in items if i.amount is not None]
    return sum(amounts, Decimal("0")) if amounts else None
