"""A folder for a private PostgreSQL cluster (deployments/postgres.sh), or the reason there is
none: CI installs Debian's postgresql, so there a missing server fails the test."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from benchmarks.database_load import postgres_installed


def postgres_work_folder(prefix: str) -> Path:
    """A new folder under /tmp (not pytest's private tmp: the server runs as its own system
    user); skips, or fails under CI, when the PostgreSQL binaries are not installed."""
    if not postgres_installed():
        if os.environ.get("CI"):
            pytest.fail("CI installs Debian's postgresql, but no initdb was found")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)
    return work
