"""Comparable forms of printed text, shared by the extractor, verify and the scorer.

Printed text differs from the value it carries in case, accents, spacing and punctuation
("Müller GmbH" / "MULLER GMBH", "INV-0042" / "inv 0042"). Each comparison in the project goes
through one of these forms, so the extractor, the grounding check and the scorer agree on what
"the same text" means.
"""

from __future__ import annotations

import re
import unicodedata

# Letters Unicode does not decompose into base + accent, and the "n°" / "nº" ordinal signs.
_NO_DECOMPOSITION = {"°": "o", "º": "o", "ł": "l", "Ł": "l", "ø": "o", "Ø": "o", "đ": "d", "Đ": "d"}


def fold(text: str) -> str:
    """Lower-case, accent-free text of the *same length*, so offsets map back to the words."""
    out = []
    for char in text:
        if char in _NO_DECOMPOSITION:
            out.append(_NO_DECOMPOSITION[char])
            continue
        base = unicodedata.normalize("NFKD", char)[:1] or char
        low = base.lower()
        out.append(low[:1] if low else base)
    return "".join(out)


def plain(text: str) -> str:
    """Casefolded, accent-free, compatibility-decomposed text with single spaces.

    Unlike `fold` the length may change ("ß" → "ss", "ﬁ" → "fi"): for comparing, not offsets.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(_NO_DECOMPOSITION.get(c, c) for c in decomposed)
    return " ".join("".join(c for c in stripped if not unicodedata.combining(c)).casefold().split())


def text_key(text: str) -> str:
    """Letters and digits only, case- and accent-free: spacing and punctuation never count."""
    return "".join(c for c in plain(text) if c.isalnum())


_LEGAL_SUFFIX = re.compile(
    r"[\s,]+(?:gmbh|ag|b\.?\s?v\.?|n\.?\s?v\.?|inc\.?|ltd\.?|llc|limited|plc|s\.?a\.?s?|sarl|"
    r"sdn\.?\s*bhd\.?|bhd\.?|s/b|pvt\.?\s*ltd\.?|corp\.?|co\.?)\s*$"
)


def name_key(text: str) -> str:
    """A company name without its legal form: "Amazon Web Services, Inc." ~ "Amazon Web Services".

    Legal forms are dropped from both sides: one company is often written with and without.
    """
    return text_key(_LEGAL_SUFFIX.sub("", plain(text)))


def invoice_number_key(text: str) -> str:
    return text_key(text.strip().lstrip("#"))
