"""A response cache on any fsspec folder: a repeated call (same images, prompt, model, schema,
detail) is answered from disk and costs nothing."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import fsspec
from pydantic import BaseModel

from mmflow.tasks.provider.results import Usage


def schema_fingerprint(schema: type[BaseModel]) -> str:
    """Name, optional `schema_version` ClassVar and a hash of the JSON schema: changes miss."""
    canonical = json.dumps(schema.model_json_schema(), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    version = getattr(schema, "schema_version", None)
    return f"{schema.__name__}@{version}:{digest}" if version else f"{schema.__name__}:{digest}"


def response_cache_key(
    *,
    provider: str,
    model: str,
    prompt: str,
    image_sha256s: list[str],
    schema: type[BaseModel],
    detail: str,
) -> str:
    """sha256 over every input that can change the answer."""
    parts = {
        "provider": provider,
        "model": model,
        "prompt": prompt,
        "images": image_sha256s,
        "schema": schema_fingerprint(schema),
        "detail": detail,
    }
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedReply(BaseModel):
    text: str
    model: str
    usage: Usage
    repaired: bool = False


class ResponseCache:
    """One JSON file per key under `root` (a local path or any fsspec URL such as s3://…)."""

    def __init__(self, root: str, **storage_options: Any) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(root, **storage_options)
        self.root = self.root.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.root}/{key[:2]}/{key}.json"

    def get(self, key: str) -> CachedReply | None:
        path = self._path(key)
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "rb") as fh:
            return CachedReply.model_validate_json(fh.read())

    def put(self, key: str, reply: CachedReply) -> None:
        """Write to a temporary name then move, so a reader never sees half a file."""
        path = self._path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(reply.model_dump_json().encode())
        self.fs.mv(tmp, path)
