"""The code version an evaluation result is recorded with: mmflow's version, and the git commit
when mmflow runs from a checkout (an editable install, CI's clone), so a point on the trend
chart can be traced to the change that made it."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError
from pathlib import Path

from mmflow.tasks.eval.results import CodeVersion
from mmflow.tasks.versions import installed_version

SOURCE_DIR = Path(__file__).resolve().parents[2]  # the checkout root in an editable install


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=SOURCE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> CodeVersion:
    """mmflow's version; the commit and whether tracked files differ from it, when known."""
    try:
        package = installed_version("mmflow")
    except PackageNotFoundError:
        package = "unknown"
    # Only a checkout's own commit: an installed copy may sit inside some other repository.
    if not (SOURCE_DIR / "pyproject.toml").is_file():
        return CodeVersion(mmflow=package)
    commit = _git("rev-parse", "HEAD")
    if commit is None or len(commit) != 40:
        return CodeVersion(mmflow=package)
    status = _git("status", "--porcelain", "--untracked-files=no")
    dirty = bool(status) if status is not None else None
    return CodeVersion(mmflow=package, git_commit=commit, git_dirty=dirty)
