"""Line-item tables from word geometry: a header row names the columns, rows below fill them.

A header row is a row where at least two column roles are recognised (description, quantity,
unit price, amount) and one of them carries money. Its words give each column an x-position;
every following row whose amount sits under the amount column is an item, text-only rows in the
description column continue the item above, and the table ends at the grand-total row or at a
wide vertical gap. A header repeated on the next page continues the table there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from tasks.extraction.labels import match_labels
from tasks.extraction.layout import Row, fold, union
from tasks.extraction.parsing import find_amounts
from tasks.models import BBox, LineItem

_ROLE_WORDS: dict[str, set[str]] = {
    "description": set(
        "description desc item items article artikel product title designation beschreibung "
        "bezeichnung leistung omschrijving descripcion concepto articulo producto nazwa "
        "particulars service code/desc".split()
    ),
    "quantity": set(
        "qty quantity menge anzahl quantite qte nombre aantal hoeveelheid cantidad cant ilosc "
        "units hours stk".split()
    ),
    "unit_price": set(
        "price rate u/p s/price preis einzelpreis vk-preis prix p.u. pu prijs precio cena "
        "unit_price".split()
    ),
    "amount": set(
        "amount total betrag gesamtpreis zeilenbetrag gesamt montant bedrag importe amt "
        "wartosc".split()
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
    for segment in row.segments[:2]:
        for match in match_labels(segment.folded):
            if match.start <= 2 and match.field in ("total", "subtotal", "tax_amount"):
                return match.field
    return None


_NUMBER = re.compile(r"^-?\d+(?:[.,]\d+)?")
# a cell holding only a number, money or a percentage ("1", "€ 4,24", "21%", "1.00 kg")
_NUMERIC_CELL = re.compile(r"[\s€$£₹¥RMs.*%-]*-?[\d.,]+\s*(?:%|[A-Za-z€$£]{0,5})[\s*]*")


def _quantity(row: Row, column: Column, width: float) -> Decimal | None:
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


def _read_table(
    rows: list[Row],
    header_index: int,
    columns: dict[str, Column],
    decimal_sep: str,
    items: list[LineItem],
) -> int:
    header = rows[header_index]
    amount_col = columns["amount"]
    money_cols = [c for c in columns.values() if c.role in ("amount", "unit_price")]
    numeric_left = min(c.x0 for c in columns.values() if c.role != "description")
    desc = columns.get("description")
    desc_right = min(
        [c.x0 for c in columns.values() if desc is not None and c.x0 > desc.x1] or [1e9]
    )
    tolerance = max(40.0, 1.5 * (amount_col.x1 - amount_col.x0))
    last_bottom = header.bbox[3]
    line_height = header.height
    current: LineItem | None = None
    index = header_index + 1
    while index < len(rows):
        row = rows[index]
        if row.page != header.page:
            return index  # a repeated header on the next page starts the next table
        if row.bbox[1] - last_bottom > 4 * max(line_height, row.height) and current is not None:
            return index
        if _header_columns(row) is not None:
            return index
        totals = _is_totals_row(row)
        if totals == "total" and items:
            return index + 1
        if totals is not None:
            index += 1
            current = None
            continue
        amounts = [
            (seg, m)
            for seg in row.segments
            for m in find_amounts(seg.text, decimal_sep)
        ]
        placed = []
        for seg, m in amounts:
            box = seg.span_bbox(m.start, m.end)
            centre = (box[0] + box[2]) / 2
            nearest = min(money_cols, key=lambda c: abs(c.centre - centre))
            placed.append((nearest, m.value, box, seg.span_evidence(m.start, m.end)))
        line_amounts = [p for p in placed if p[0] is amount_col and abs(p[0].centre - (p[2][0] + p[2][2]) / 2) < tolerance]
        texts = [
            s
            for s in row.segments
            if ((desc is not None and desc.x0 - 20 <= s.bbox[0] < desc_right) or s.bbox[2] <= numeric_left)
            and not _NUMERIC_CELL.fullmatch(s.text)
        ]
        text = " ".join(s.text for s in texts).strip()
        if line_amounts:
            amount_col_hit = line_amounts[-1]
            prices = [p for p in placed if p[0].role == "unit_price"]
            quantity = (
                _quantity(row, columns["quantity"], tolerance) if "quantity" in columns else None
            )
            unit_price = prices[0][1] if prices else None
            boxes: list[BBox] = [amount_col_hit[2], *[s.bbox for s in texts]]
            consistent = (
                quantity is not None
                and unit_price is not None
                and abs(quantity * unit_price - amount_col_hit[1]) <= Decimal("0.01")
            )
            current = LineItem(
                description=text,
                quantity=quantity,
                unit_price=unit_price,
                amount=amount_col_hit[1],
                page=row.page,
                bbox=union(boxes),
                evidence=row.text,
                confidence=0.8 if consistent else 0.6,
            )
            items.append(current)
            last_bottom = row.bbox[3]
        elif text and current is not None and row.bbox[1] - last_bottom < 2 * line_height:
            joined = f"{current.description}\n{text}" if current.description else text
            current.description = joined
            last_bottom = row.bbox[3]
        elif text and current is None and not amounts:
            last_bottom = row.bbox[3]
        index += 1
    return index


def line_total(items: list[LineItem]) -> Decimal | None:
    amounts = [i.amount for i in items if i.amount is not None]
    return sum(amounts, Decimal("0")) if amounts else None
