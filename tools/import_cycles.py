"""Find import cycles among the modules of a package: ``python tools/import_cycles.py [DIR]``.

Every ``import`` and ``from ... import`` in a module counts, at module level or inside a function
(a function-level import is a cycle that waits for the first call to matter). Prints each group of
modules that import one another, directly or through others, and exits with status 1 when there
is one; status 0 and one line when there is none. Reads the source with ``ast`` only: nothing is
imported or run.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

DEFAULT_PACKAGE = Path(__file__).resolve().parent.parent / "canfvc_codec"
INIT = "__init__"


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under ``package_dir`` (packages by their __init__)."""
    root = package_dir.parent
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == INIT:
            parts.pop()
        names[".".join(parts)] = path
    return names


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a relative import ``from .target`` (``level`` dots) in ``module``."""
    if level == 0:
        return target or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imported_modules(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """The modules of the package that ``module`` imports anywhere in its source."""
    known = set(known)
    is_package = path.stem == INIT
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, is_package, node.level, node.module)
            # `from a import b` imports the module a.b when there is one, else a name of a.
            candidates = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source
                for alias in node.names
            ]
        else:
            continue
        found.update(name for name in candidates if name in known and name != module)
    return found


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    modules = module_names(package_dir)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    package_dir = Path(args[0]) if args else DEFAULT_PACKAGE
    graph = import_graph(package_dir)
    found = cycles(graph)
    for group in found:
        members = set(group)
        print(f"import cycle among {len(group)} modules:")
        for name in group:
            print(f"  {name} -> {', '.join(sorted(graph[name] & members))}")
    if not found:
        print(f"no import cycles among the {len(graph)} modules of {package_dir.name}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
