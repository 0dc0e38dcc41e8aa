"""Where step results persist: a local folder by default, S3 (and compatibles) through s3fs.

Prefect reads a bare `"s3://…"` result-storage string as a block *name* and fails (docs/facts.md),
so a remote location becomes a `RemoteFileSystem` block whose `settings` are s3fs keyword
arguments. Credentials are never put into those settings (a saved block is readable by anyone
with API access); s3fs finds them itself (environment, AWS config, instance role). Only the
endpoint of an S3-compatible server (`AWS_ENDPOINT_URL`, e.g. MinIO or moto) is written into
the block, so a worker on another machine that loads the saved block talks to the same server.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem

from mmflow.tasks.filesystems import protocol_of, require_filesystem


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
