"""Where step results persist: a local folder by default, S3 (and compatibles) through s3fs.

Prefect reads a bare `"s3://…"` result-storage string as a block *name* and fails (FACTS.md),
so a remote location becomes a `RemoteFileSystem` block whose `settings` are s3fs keyword
arguments. Credentials are never put into those settings (a saved block is readable by anyone
with API access); s3fs finds them itself (environment, AWS config, instance role). Only the
endpoint of an S3-compatible server (`AWS_ENDPOINT_URL`, e.g. MinIO or moto) is written into
the block, so a worker on another machine that loads the saved block talks to the same server.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import fsspec
from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem

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


def s3_settings() -> dict[str, Any]:
    """s3fs keyword arguments for the block: the endpoint of an S3-compatible server, if any."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


def storage_for(location: str) -> WritableFileSystem:
    """A Prefect storage block for a local folder or an fsspec URL such as `s3://bucket/cache`."""
    protocol = protocol_of(location)
    if protocol == "file":
        path = location.removeprefix("file://")
        return LocalFileSystem(basepath=path)
    require_filesystem(location)
    settings = s3_settings() if protocol in ("s3", "s3a") else {}
    return RemoteFileSystem(basepath=location.rstrip("/"), settings=settings)
