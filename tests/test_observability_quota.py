"""Tenant quotas (tasks/provider/quota.py): a hard limit refuses the call that would cross it
before anything is sent and the input still ends with a result through the offline route; a
soft limit lets the call through and records it; and two worker processes sharing a store
(SQLite on one machine, a real `redis-server` for several) cannot jointly overspend."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from mmflow.blocks.providers import OpenAIProvider
from mmflow.flows.image import image_flow
from mmflow.flows.runs import RunSettings
from mmflow.tasks.image import ImageResult, ImageTask
from mmflow.tasks.ledger import CostLedger
from mmflow.tasks.provider.quota import (
    QuotaExceeded,
    QuotaGuard,
    SqliteQuotaStore,
    TenantQuota,
    open_store,
)
from tests.fakeproviders import OPENAI_CHAT, FakeServer, openai_chat, saved
from tests.imagesamples import chart_image, png
from tests.quota_worker import spend

TEXT = json.dumps({"text": "Sales by region"})


# ---------------------------------------------------------------- a hard limit in a real run


@pytest.mark.slow
def test_a_hard_quota_refuses_the_crossing_call_and_the_input_ends_offline(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each low-detail description holds 85 image tokens: the first fits under 100, the second not
    (tmp_path / "quotas.toml").write_text(
        "[tenants.acme]\nwindow_s = 3600\nimage_tokens_hard = 100\n"
    )
    ledger = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    monkeypatch.setenv("MMFLOW_QUOTAS", str(tmp_path / "quotas.toml"))
    monkeypatch.setenv("MMFLOW_QUOTA_STORE", str(tmp_path / "quota.sqlite"))
    monkeypatch.setenv("MMFLOW_LEDGER_URL", ledger)
    for seed in range(2):
        (tmp_path / f"chart-{seed}.png").write_bytes(png(chart_image(seed, engine="pillow")))
    with FakeServer() as server:
        server.on("POST", OPENAI_CHAT, lambda _req: openai_chat(TEXT))
        report = image_flow(
            inputs=[str(tmp_path / "chart-0.png"), str(tmp_path / "chart-1.png")],
            out=str(tmp_path / "out"),
            task=ImageTask.EXTRACT_TEXT,
            provider=saved(OpenAIProvider(api_key="sk-test", base_url=f"{server.url}/v1")),
            run=RunSettings(cache=False, workers=2, tenant="acme"),
        )
        assert len(server.sent(OPENAI_CHAT)) == 1  # the crossing call was never sent
    assert [item.status.value for item in report.inputs] == ["ok", "ok"]
    sources = []
    for item in report.inputs:
        result = ImageResult.model_validate_json(Path(str(item.output)).read_text())
        sources.append(result.answer.source)
        if result.answer.source.startswith("offline:"):
            assert "QuotaExceeded" in result.answer.failures[0]["error"]
            assert "Sales" in str(result.answer.value)  # the offline route (OCR) answered
            assert item.trace is not None
            assert item.trace.fallback_triggered and item.trace.error_type == "quota_exceeded"
    assert sorted(s.split(":")[0] for s in sources) == ["offline", "openai"]
    rows = CostLedger(ledger).rows()
    assert sorted((r.outcome, r.error_type) for r in rows) == [
        ("ok", None),
        ("refused", "quota_exceeded"),
    ]


def test_a_soft_limit_lets_the_call_through_and_says_so(tmp_path: Path) -> None:
    guard = QuotaGuard(
        "acme",
        TenantQuota(image_tokens_soft=100, usd_hard=Decimal("1")),
        SqliteQuotaStore(tmp_path / "q.sqlite"),
    )
    assert not guard.admit(85, Decimal("0.01")).soft_exceeded
    assert guard.admit(85, Decimal("0.01")).soft_exceeded  # 170 > 100: allowed, recorded


def test_a_released_hold_frees_the_window_and_old_usage_leaves_it(tmp_path: Path) -> None:
    store = SqliteQuotaStore(tmp_path / "q.sqlite")
    guard = QuotaGuard("acme", TenantQuota(window_s=0.5, usd_hard=Decimal("1")), store)
    hold = guard.admit(0, Decimal("1"))
    with pytest.raises(QuotaExceeded, match="hard limit"):
        guard.admit(0, Decimal("0.01"))
    guard.release(hold)  # the call was never made: nothing billed
    guard.settle(guard.admit(0, Decimal("1")), 0, Decimal("1"))
    time.sleep(0.6)  # the window slides past it
    guard.admit(0, Decimal("1"))


def test_an_unreadable_quota_file_refuses_every_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmflow.flows.observe import quota_guard

    (tmp_path / "quotas.toml").write_text("[tenants.acme\nusd_hard = 1\n")  # a typo
    monkeypatch.setenv("MMFLOW_QUOTAS", str(tmp_path / "quotas.toml"))
    guard = quota_guard("acme")
    assert guard is not None
    with pytest.raises(QuotaExceeded, match="cannot be used"):
        guard.admit(0, Decimal("0"))


# ---------------------------------------------------------------- two workers, one limit


def race(store_url: str) -> list[int]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        start_at = time.time() + 3  # after both have imported mmflow
        return pool.starmap(spend, [(store_url, start_at)] * 2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `redis-server` (Debian's) on a free loopback port, no persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_two_workers_cannot_overspend_a_hard_limit_in_redis(redis_url: str) -> None:
    admitted = race(redis_url)
    assert sum(admitted) == 200  # exactly the limit: never more, and nothing lost
    assert all(count > 0 for count in admitted)  # both really competed
    usage = open_store(redis_url).usage("acme", 3600)
    assert usage.usd_nano == 2_000_000_000


def test_two_workers_cannot_overspend_a_hard_limit_in_sqlite(tmp_path: Path) -> None:
    admitted = race(str(tmp_path / "quota.sqlite"))
    assert sum(admitted) == 200
    assert all(count > 0 for count in admitted)
