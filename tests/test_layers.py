"""The package's shape, held by tests (issue 21): the layers of docs/architecture.md as an
import-linter contract (pyproject.toml), no import cycle even through imports inside functions,
no module over 400 lines and no function over 60 unless a comment says why, and no module-level
store of process state (the session owns that)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "oxen_magic"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
#: A function longer than the limit says why in a comment carrying this mark.
LONG_OK = "long-function:"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _runtime_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `name` imports when it runs: at the top or inside functions, but not
    under `if TYPE_CHECKING:` (those never execute)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets.update(f"{base}.{alias.name}" for alias in node.names)
            targets.add(base)
    resolved = set()
    for target in targets:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name and target != "oxen_magic":
            resolved.add(target)
    return resolved


def test_no_import_cycles_even_inside_functions() -> None:
    modules = _modules()
    graph = {name: _runtime_imports(name, path, modules) for name, path in modules.items()}
    # a package's __init__ naming its own children is not a cycle through them
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    cycles, index, low, stack, on_stack, counter = [], {}, {}, [], set(), [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    for name in graph:
        if name not in index:
            visit(name)
    assert cycles == []


def test_the_layers_hold() -> None:
    """`lint-imports` checks the contract in pyproject.toml (the layers of docs/architecture.md)."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if command is None:
        pytest.fail("lint-imports is missing: install the test extra (pip install -e '.[test]')")
    result = subprocess.run(
        [command, "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_layer_contract_names_every_subpackage() -> None:
    """A new subpackage must be placed in the layers, or the contract would not see it."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    named = set()
    for contract in config["contracts"]:
        for entry in contract.get("layers", []):
            named.update(part.strip() for part in entry.replace(":", "|").split("|"))
    named.update(*(c.get("source_modules", []) for c in config["contracts"]))
    subpackages = {f"oxen_magic.{path.parent.name}" for path in PACKAGE.glob("*/__init__.py")}
    assert subpackages - named - {"oxen_magic.localhub"} == set()


def test_modules_stay_small() -> None:
    long = {
        str(path.relative_to(ROOT)): count
        for path in PACKAGE.rglob("*.py")
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_functions_stay_short_or_say_why() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                body = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                if length > MAX_FUNCTION_LINES and LONG_OK not in body:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []


def test_no_module_keeps_process_state_in_a_global() -> None:
    """Process state lives in the session: a module-level name assigned an empty mutable store
    (dict, list, set, WeakSet...) is state waiting to leak between sessions. The one root that
    finds the session (`session._CURRENT`) is the exception, and says so."""
    stores = ("{}", "[]", "set()", "dict()", "list()", "weakref.WeakSet()", "weakref.WeakValueDictionary()")
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            value = getattr(node, "value", None)
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            if value is not None and isinstance(target, ast.Name) and ast.unparse(value) in stores:
                found.append(f"{path.relative_to(ROOT)}: {target.id}")
    assert found == []


def test_no_module_re_exports_what_another_defines() -> None:
    """`from .x import name as name` makes a module answer for names it does not define (stubs left
    by a split): importers should find a behaviour where it lives."""
    stubs = [
        f"{path.relative_to(ROOT)}: {alias.name}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name
    ]
    assert stubs == []
