"""Storage locations by URL: which fsspec protocol a location uses, and whether its driver is here.

fsspec knows the names of many protocols but imports their drivers lazily; without a check the
first listing or write fails deep inside a run with an ImportError. Inputs (tasks/inputs.py),
outputs (tasks/persist.py) and Prefect's result storage (blocks/storage.py) all check here first.
"""

from __future__ import annotations

import importlib

import fsspec

from mmflow.tasks.errors import MissingDependency

# Which package provides a protocol, and the extra that installs it.
_PROTOCOL_PACKAGES: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "pip install 'mmflow[s3]'"),
    "s3a": ("s3fs", "pip install 'mmflow[s3]'"),
}


def protocol_of(location: str) -> str:
    """`s3` for `s3://bucket/key`; `file` for local paths and `file://` URLs."""
    if "://" not in location:
        return "file"
    return location.split("://", 1)[0].lower()


def require_filesystem(location: str) -> None:
    """Raise `MissingDependency` naming what to install when `location`'s protocol has no driver.

    fsspec knows the names of many protocols but imports their drivers lazily; without this
    check the first listing or write fails deep inside a run with an ImportError.
    """
    protocol = protocol_of(location)
    if protocol == "file":
        return
    package, install = _PROTOCOL_PACKAGES.get(protocol, ("", ""))
    try:
        if package:
            importlib.import_module(package)
        fsspec.get_filesystem_class(protocol)
    except ImportError as error:
        raise MissingDependency(
            f"{protocol}:// storage ({location})",
            install or f"install the fsspec driver for {protocol}:// ({error})",
        ) from error
    except ValueError as error:  # fsspec has never heard of it
        raise MissingDependency(
            f"{protocol}:// storage ({location})", f"no fsspec driver is known for {protocol}://"
        ) from error
