"""Installed package versions, looked up once per process.

`importlib.metadata.version` searches every folder on `sys.path` for the package's metadata on
every call: 4–8 ms each on a 2-core machine with two workers, and library versions go into the
cache key and lineage of every document (the engine labels), so a batch of 200 text PDFs spent
about a second of its five in these lookups (docs/performance.md). A package upgraded while a
process runs is seen by the next process, as its code is.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import version


@cache
def installed_version(package: str) -> str:
    """The installed version of `package`; raises `PackageNotFoundError` when it is not
    installed (not remembered: installing it is seen at the next call)."""
    return version(package)
