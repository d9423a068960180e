"""The package's imports, read from its source: no cycles, and only declared dependencies."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def package_dirs() -> dict[str, Path]:
    """Each package directory that ships as part of dbdedup: 'dbdedup' and what package-dir maps in."""
    dirs = {"dbdedup": ROOT / "dbdedup"}
    for name, folder in PYPROJECT.get("tool", {}).get("setuptools", {}).get("package-dir", {}).items():
        if name.startswith("dbdedup."):
            dirs[name] = ROOT / folder
    return dirs


def modules() -> dict[str, Path]:
    """Module name -> source file, for every module of the package (the package itself included)."""
    found: dict[str, Path] = {}
    for package, folder in package_dirs().items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(dbdedup modules, other top-level names) that ``path`` imports anywhere, function bodies included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from package import module` imports the module; `from module import name` the module
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "dbdedup":
                outside.add(target.split(".")[0])
                continue
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target != name:
                inside.add(target)
    return inside, outside


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found))[0] for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_package_and_its_imports():
    # the checker itself: it must see the modules and the edges it is meant to police
    graph = import_graph()
    assert {"dbdedup.load", "dbdedup.fingerprint", "dbdedup.cli.main", "dbdedup.migrations.env"} <= set(graph)
    assert {"dbdedup.decode", "dbdedup.hashes", "dbdedup.variants", "dbdedup.embedding"} <= graph["dbdedup.fingerprint"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    # lazy imports inside functions count too: a cycle hidden in a function body is still one
    assert cycles(import_graph()) == []


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalised(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0])


def test_the_package_imports_only_declared_dependencies():
    # Run-time imports must come from [project].dependencies or a run-time extra; the test extra
    # (pytest, onnx, ImageHash: dbdedup computes imagehash's values itself) must not be needed.
    project = PYPROJECT["project"]
    extras = {name: deps for name, deps in project.get("optional-dependencies", {}).items() if name != "test"}
    declared = {_requirement_name(r) for r in project["dependencies"]}
    declared |= {_requirement_name(r) for deps in extras.values() for r in deps}
    distributions = packages_distributions()
    found = modules()
    undeclared = {}
    for name, path in found.items():
        for top in imports_of(name, path, set(found))[1]:
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            installed = {_normalised(d) for d in distributions.get(top, ())}
            # an optional plugin that is not installed here: its import name starts its project name
            known = installed & declared if installed else {d for d in declared if d.startswith(_normalised(top))}
            if not known:
                undeclared.setdefault(top, []).append(name)
    assert undeclared == {}
    assert "imagehash" not in {top for name, path in found.items() for top in imports_of(name, path, set(found))[1]}


def test_the_command_line_starts_without_numpy_or_pillow():
    # every command pays its start-up before it runs (twice in a load + report); numpy and Pillow
    # were a third of it, and only the commands that compute on pixels or vectors import them
    import subprocess

    script = ("import sys, dbdedup.cli.main; "
              "print(sorted(m for m in ('numpy', 'PIL', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
