"""A command without PREFECT_API_URL uses the local server, not a temporary one of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
