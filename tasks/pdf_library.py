"""PyMuPDF, loaded without its layout analyser: what every module here imports it from.

PyMuPDF 2 imports `pymupdf.layout` and `pymupdf4llm` whenever it is imported; they load
onnxruntime and an ONNX layout model (seconds on a busy machine) for `Page.get_layout()` and
`pymupdf.to_markdown()`, neither of which mmflow calls. Loading `pymupdf` through this module
skips both imports (so in this process `pymupdf.to_markdown` is unavailable); importing
`pymupdf.layout` or `pymupdf4llm` explicitly afterwards still works. It saves about 1–1.4 s per
command on a busy 2-core machine (docs/performance.md).
"""

from __future__ import annotations

import sys

_SKIPPED = ("pymupdf.layout", "pymupdf4llm")
_skip = [name for name in ("pymupdf", *_SKIPPED) if name in sys.modules] == []
if _skip:
    for name in _SKIPPED:
        sys.modules[name] = None  # type: ignore[assignment]  # its import raises ImportError
try:
    import pymupdf
finally:
    if _skip:
        for name in _SKIPPED:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]

__all__ = ["pymupdf"]
