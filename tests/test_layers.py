"""The layout's rules, read from the source with ``ast``: imports only point down the layers
(runtime <- train <- export <- compress <- serve, benchmarks <- cli), no two packages import each other and no
package-level cycle exists (lazy imports count), the runtime never imports torch, the server stands on the runtime
alone, a study imports the product but no other study, and the extras users install by role never pull two
onnxruntime builds."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
LAYER = {"runtime": 0, "train": 1, "export": 2, "compress": 3, "serve": 4, "benchmarks": 4, "cli": 5}


def _modules() -> dict[str, Path]:
    """Every module of the distribution, named as Python imports it (from pyproject's package-dir)."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    found = {}
    for package, folder in package_dir.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every stylecast module ``path`` imports anywhere (top level or inside a function)."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                     for alias in node.names]
        else:
            continue
        targets |= {name for name in names if name.startswith("stylecast")}
    return targets


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _package(module: str) -> str:
    return module.split(".")[1]


def _layer(module: str) -> int:
    return LAYER[_package(module)]


PACKAGES = {package: {_package(t) for m, targets in GRAPH.items() if _package(m) == package for t in targets} - {package}
            for package in LAYER}


def test_every_package_is_seen():
    assert {m.split(".")[1] for m in MODULES} == set(LAYER)
    assert len(MODULES) > 60


def test_imports_only_point_down():
    """Another package is imported only from a lower layer: two packages on one layer never import each other."""
    upward = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
                    if _package(t) != _package(m) and _layer(t) >= _layer(m))
    assert upward == []


def test_no_package_level_cycle():
    """Packages form a DAG: walking the package graph from any package never comes back to it."""
    def reachable(start: str) -> set[str]:
        seen, todo = set(), list(PACKAGES[start])
        while todo:
            package = todo.pop()
            if package not in seen:
                seen.add(package)
                todo += PACKAGES.get(package, ())
        return seen

    assert sorted(p for p in PACKAGES if p in reachable(p)) == []


def test_a_study_imports_no_other_study():
    studies = "stylecast.benchmarks.studies."
    crossed = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() if m.startswith(studies)
                     for t in targets if t.startswith(studies) and t != m)
    assert crossed == []


def test_no_import_cycles():
    """Depth-first search over the module graph; a back edge is a cycle (lazy imports count too)."""
    cycles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*stack[stack.index(target):], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_runtime_never_imports_torch():
    offenders = []
    for name, path in MODULES.items():
        if _layer(name) > 0:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{name}: {m}" for m in modules if m.split(".")[0] in ("torch", "torchvision")]
    assert offenders == []


def test_serve_imports_only_the_runtime():
    """`stylecast serve` runs where the runtime runs: no torch, no training or export code."""
    serve = {name: targets for name, targets in GRAPH.items() if name.split(".")[1] == "serve"}
    foreign = sorted(f"{m} imports {t}" for m, targets in serve.items() for t in targets
                     if t.split(".")[1] not in ("runtime", "serve"))
    torch = sorted(m for m, path in MODULES.items() if m in serve and "import torch" in path.read_text())
    assert serve and foreign == [] and torch == []


def test_every_command_is_registered_once_and_importable_without_torch():
    import subprocess
    import sys

    code = ("import sys, importlib; from stylecast.cli import COMMANDS; "
            "[getattr(importlib.import_module(t.split(':')[0]), t.split(':')[1]) for t in COMMANDS.values()]; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def _requirements(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """The distribution names an extra pulls in, its nested `stylecast[...]` extras expanded."""
    names = set()
    for requirement in extras[extra]:
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()
        if name == "stylecast":
            for nested in re.search(r"\[(.*)\]", requirement).group(1).split(","):
                names |= _requirements(nested.strip(), extras)
        else:
            names.add(name)
    return names


@pytest.mark.parametrize("combination", [("gpu",), ("export-tools", "gpu"), ("jetson",), ("cpu",), ("serve", "cpu"),
                                         ("serve", "gpu")])
def test_no_documented_install_pulls_both_onnxruntime_builds(combination):
    """CPU onnxruntime and onnxruntime-gpu install the same module and clash; JetPack brings its own build."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = set().union(*(_requirements(extra, extras) for extra in combination))
    assert not {"onnxruntime", "onnxruntime-gpu"} <= names
    if combination == ("jetson",):
        assert not names & {"onnxruntime", "onnxruntime-gpu", "tensorrt"}
    assert f"stylecast[{','.join(combination)}]" in (ROOT / "README.md").read_text()
