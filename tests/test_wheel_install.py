"""The built wheel installs one namespace, `mmflow`, and works from site-packages.

Checked on the real artefact a user gets from `pip install mmflow`: the wheel is built from this
checkout, installed into a fresh venv (without dependencies: a `.pth` line appends the dev venv's
site-packages after the fresh one's, as a plain folder, so the editable install's path hook is
not loaded), and imported there, so a module that only works from the source tree fails here.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERIC = {"flows", "tasks", "blocks", "deployments", "cli"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (built,) = dist.glob("mmflow-*.whl")
    return built


def test_the_wheel_holds_only_the_mmflow_namespace_and_its_data_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops - {"mmflow"} == {next(t for t in tops if t.endswith(".dist-info"))}
    assert not tops & GENERIC
    # Data the code reads at run time travels with it.
    assert "mmflow/tasks/prices.toml" in names
    assert "mmflow/deployments/prefect.yaml" in names
    assert "mmflow/deployments/postgres.sh" in names


@pytest.mark.slow
def test_the_installed_wheel_imports_and_runs_from_site_packages(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", purelib,
         str(wheel)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    installed = {p.name for p in Path(purelib).iterdir()}
    assert "mmflow" in installed and not installed & GENERIC

    # The dev venv's site-packages, for third-party packages only: a `.pth` line is a plain path
    # (the editable install's own `.pth` hook there is not run) and comes after the stdlib.
    (Path(purelib) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = (
        "import mmflow.tasks.caching, mmflow.flows.registry, mmflow.cli.app as app;"
        "import mmflow, sys;"
        "print(list(mmflow.__path__)[0]);"
        "print(sorted(mmflow.flows.registry.names()))"
    )
    done = subprocess.run(
        [str(python), "-c", probe],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,  # not the checkout: nothing importable from the source tree
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    where, scenarios = done.stdout.splitlines()[-2:]
    assert Path(where).resolve() == (Path(purelib) / "mmflow").resolve()
    assert scenarios == str(["image", "invoice", "meeting"])
