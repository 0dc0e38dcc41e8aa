"""A command without PREFECT_API_URL uses the local server, not a temporary one of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

DRIVER = """
import json, sys
from mmflow.deployments import local_server
url = local_server.ensure_api_url(idle_s=120)
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as client:
    used = str(client.api_url)
    client.hello()
print(json.dumps({
    "local": url,
    "used": used,
    "temporary_server": "prefect.server.api.server" in sys.modules,
}))
local_server.stop()
"""


def test_prefect_clients_use_the_local_server_once_it_is_ensured(tmp_path: Path) -> None:
    """Prefect reads its settings when first imported (mmflow's check for a configured URL
    does that), so setting PREFECT_API_URL afterwards alone left its client on no URL: every
    command started a temporary server (seconds) beside the local one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env["MMFLOW_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["used"].rstrip("/") == seen["local"].rstrip("/")
    assert seen["temporary_server"] is False


def _home_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env["MMFLOW_HOME"] = str(home)
    return env


START = """
import json
from mmflow.deployments import local_server
info = local_server.start(idle_s=120)
print(json.dumps({"url": info.url, "pid": info.pid}))
"""


def test_commands_find_a_starting_server_and_share_it_and_a_stale_record_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command spawns the server before its imports and goes on (cli/run.py): one started
    meanwhile must wait for that server, not start a second one nor take the starting one
    for a stale one and kill it. A record left by a dead supervisor is replaced."""
    from mmflow.deployments import local_server

    home = tmp_path / "home"
    monkeypatch.setenv("MMFLOW_HOME", str(home))
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = local_server.ServerInfo(
        url="http://127.0.0.1:4299/api",
        port=4299,
        pid=dead.pid,
        home="x",
        idle_s=1,
        started_at=0,
    )
    local_server.server_dir().mkdir(parents=True)
    local_server._info_path().write_text(stale.to_json())
    try:
        assert local_server.begin_start(idle_s=120) is True  # the stale record is replaced
        starting = local_server.read_info()
        assert starting is not None and starting.pid != dead.pid
        assert local_server.begin_start(idle_s=120) is False  # starting: left alone
        commands = [
            subprocess.Popen(
                [sys.executable, "-c", START],
                env=_home_env(home),
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        seen = [
            json.loads(c.communicate(timeout=300)[0].strip().splitlines()[-1]) for c in commands
        ]
        up = local_server.wait_until_up()
    finally:
        local_server.stop()
    assert {(s["url"], s["pid"]) for s in seen} == {(up.url, starting.pid)}
    assert up.pid == starting.pid


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    """POST to a fresh server as Prefect's own client does: a 503 (SQLite busy while the
    server's services start up: one call in four in the first seconds here) is tried again."""
    for _ in range(20):
        response = httpx.post(url, json=body, timeout=30)
        if response.status_code != 503:
            break
        time.sleep(0.5)
    response.raise_for_status()
    answer: dict[str, object] = response.json()
    return answer


def _set_state(url: str, run_id: str, state: str) -> None:
    body = {"state": {"type": state, "name": state.title()}, "force": True}
    _post(f"{url}/flow_runs/{run_id}/set_state", body)


def test_an_idle_server_waits_for_its_running_flows_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor stops the server after `idle_s` without a command, but never while a
    flow run is in progress; its database is kept, so the next start has every run. The
    `mmflow server` commands report and stop it."""
    from mmflow.deployments import local_server

    home = tmp_path / "home"
    monkeypatch.setenv("MMFLOW_HOME", str(home))
    info = local_server.start(idle_s=10)  # looked at every 2.5 s
    try:
        flow = _post(f"{info.url}/flows/", {"name": "idle-test"})
        run_id = str(_post(f"{info.url}/flow_runs/", {"flow_id": flow["id"]})["id"])
        _set_state(info.url, run_id, "RUNNING")
        long_ago = time.time() - 3600
        os.utime(local_server._used_path(), (long_ago, long_ago))
        time.sleep(5)
        assert local_server.running() is not None  # idle, but a run is in progress
        _set_state(info.url, run_id, "COMPLETED")
        deadline = time.monotonic() + 60
        while local_server.read_info() is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert local_server.read_info() is None  # stopped by itself once nothing ran
        again = local_server.start(idle_s=120)
        kept = httpx.get(f"{again.url}/flow_runs/{run_id}", timeout=30).json()
        assert kept["state"]["type"] == "COMPLETED"
        mmflow = [str(Path(sys.executable).with_name("mmflow")), "server"]
        status = subprocess.run(
            [*mmflow, "status"], env=_home_env(home), capture_output=True, text=True, check=True
        )
        assert again.url in status.stdout
        stop = subprocess.run(
            [*mmflow, "stop"], env=_home_env(home), capture_output=True, text=True, check=True
        )
        assert "stopped" in stop.stdout and local_server.read_info() is None
    finally:
        local_server.stop()


def test_with_a_server_named_by_a_prefect_profile_commands_stop_spawning_the_local_one(
    prefect_server: str, tmp_path: Path
) -> None:
    """`mmflow run` spawns the local server before it can read Prefect's settings. When a
    profile names a server, the first command stops what it spawned, and later ones, told
    by a note, spawn nothing: a profile user must not pay a server start per command."""
    from mmflow.tasks.samples import numbered_invoices, write_files

    [pdf] = write_files(tmp_path / "in", numbered_invoices(1))
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(f'active = "t"\n\n[profiles.t]\nPREFECT_API_URL = "{prefect_server}"\n')
    home = tmp_path / "home"
    env = _home_env(home) | {"PREFECT_PROFILES_PATH": str(profiles)}
    server = home / "server"
    mmflow = str(Path(sys.executable).with_name("mmflow"))
    for turn in ("first", "second"):
        done = subprocess.run(
            [mmflow, "-q", "run", "invoice", str(pdf), "--out", str(tmp_path / turn)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert not (server / "server.json").exists()  # nothing left running
        if turn == "first":
            assert (server / "api-configured").exists()
            (server / "server.log").unlink(missing_ok=True)
    assert not (server / "server.log").exists()  # the second command spawned nothing
