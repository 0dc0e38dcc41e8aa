"""The package layers hold: nothing imports upward, nothing imports in a circle.

Layers, lowest first (docs/architecture.md): `tasks` (plain steps and their types), `blocks`
(Prefect blocks: providers, storage), `flows` (composition and the runner), `deployments`
(deployments, serving, the webhook), `cli` (the command line). Every import counts, including
the ones inside functions and under TYPE_CHECKING: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("tasks", "blocks", "flows", "deployments", "cli")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(["mmflow", *parts])] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[str]:
    """First-party modules `module` imports (resolved to a module, not a name inside one)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and name.startswith("mmflow."):
                yield name


GRAPH = {module: sorted(set(_imports(module, path))) for module, path in MODULES.items()}


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def test_every_folder_is_a_layer_the_test_knows() -> None:
    assert {m.split(".")[1] for m in MODULES} == set(LAYERS)


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{module} → {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    """Depth-first search for a back edge; reports the first cycle found, as a path."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in GRAPH[module]:
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in GRAPH:
        if module not in state and (cycle := visit(module)):
            pytest.fail(" → ".join(cycle))


def test_no_code_imports_the_source_folders_by_their_bare_names() -> None:
    """`from tasks.x import …` would load a second copy of a module from the checkout."""
    bare = [
        f"{path.relative_to(ROOT)}: {name}"
        for folder in (*LAYERS, "tests", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
        if name.split(".")[0] in LAYERS and not getattr(node, "level", 0)
    ]
    assert bare == []


def test_every_package_folder_is_installed() -> None:
    """pyproject lists packages by hand (package-dir mapping): a new folder must be added."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert packages == listed
