"""Shared fixtures: the shared evaluation data, and one real Prefect server for the session."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# A command that starts mmflow's local Prefect server (no PREFECT_API_URL) keeps it, its
# database and its lock files here, not in the user's data folder; stopped after the session.
os.environ.setdefault("MMFLOW_HOME", tempfile.mkdtemp(prefix="mmflow-test-home-"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the project; tests that need it skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared evaluation data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _stop_the_local_server() -> Iterator[None]:
    """A local server a test's command started ends with the session."""
    yield
    from mmflow.deployments import local_server

    local_server.stop()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real temporary Prefect server (SQLite) for flow tests; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real `moto_server` on a free loopback port, with the AWS environment pointing at it."""
    pytest.importorskip("s3fs")
    from tests.motoserver import ServerMissing, moto_server

    try:
        with moto_server() as endpoint:
            yield endpoint
    except ServerMissing as missing:
        pytest.skip(str(missing))


# In CI every test runs: a skip for a missing package, program or data set fails instead, so
# nothing the README calls tested can silently not run. The pyannote.audio tests are the one
# exception: they skip in the main venv and run in their own (`make test-pyannote`).
OWN_VENV = ("test_diarise_pyannote.py",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("CI")
        and report.skipped
        and not hasattr(report, "wasxfail")
        and Path(str(item.fspath)).name not in OWN_VENV
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"
