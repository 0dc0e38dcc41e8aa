"""mmflow's data folder, one place for what outlives a run on this machine: the local Prefect
server's database (deployments/local_server.py), the cost ledger and quota store
(tasks/telemetry_settings.py) and the evaluation history (tasks/eval/history.py)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """$MMFLOW_HOME, else $XDG_DATA_HOME/mmflow, else ~/.local/share/mmflow."""
    if os.environ.get("MMFLOW_HOME"):
        return Path(os.environ["MMFLOW_HOME"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mmflow"
