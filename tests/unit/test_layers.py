"""The package's layers: a module imports only from its own layer or the ones below it, and
no two modules import each other, even through others, even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "prefork"

# Bottom to top. A package's modules may import from any earlier layer, and from their own.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "prefork config datadir addresses sockets unix_socket quiet_log wakeup logs pidfile "
        "metrics access_log usercode",
        "http db compiled",  # compiled reports how the request path (http) was built
        "wsgi bus cron sessions dev",
        "realtime ops demo",
        "workers",
        "servers",
        "commands",
        "cli __main__",
    )
)


def _unit(module: str) -> str:
    """The layer member a module belongs to: its subpackage, or its top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "prefork"


def _rank(module: str) -> int:
    unit = _unit(module)
    for rank, layer in enumerate(LAYERS):
        if unit in layer:
            return rank
    raise AssertionError(f"{module}: prefork.{unit} is in no layer; add it to LAYERS")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every prefork module the file imports, at the top or inside a function."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "prefork" or name.startswith("prefork.")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        # `from prefork.x import name` names a module only when x.name is one.
        graph[module] = {
            name for name in _imports(path, module) if name in modules and name != module
        }
    return graph


def test_every_module_is_in_a_layer() -> None:
    for module in _graph():
        _rank(module)


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = [
        f"{module} imports {target}"
        for module, targets in sorted(_graph().items())
        for target in sorted(targets)
        if _rank(target) > _rank(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles: list[str] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(" -> ".join([*path[path.index(module) :], module]))
            return
        if module in done:
            return
        for target in sorted(graph[module]):
            # A package's __init__ importing its own modules is how a package exports.
            if not target.startswith(module + "."):
                visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert not cycles, "\n".join(cycles)


def test_the_layer_rules_see_imports() -> None:
    """The walk finds what it checks: the CLI reaches the commands, and a function-level
    import counts."""
    graph = _graph()
    assert "prefork.commands.load" in graph["prefork.cli"]
    assert "prefork.ops.machine" in graph["prefork.commands.load"]  # imported in a function
    assert _rank("prefork.http.parser") < _rank("prefork.workers.http")
