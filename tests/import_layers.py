"""The import check: adgen's modules import one way, down the floors of docs/architecture.md.

The floors are read from the ``layers`` block of ``docs/architecture.md`` (one line per floor,
top floor first: ``NAME: unit unit …``; a unit is a package, or a module, of adgen). Every
``import`` of an adgen module, at the top of a file or inside a function, is checked:

- a module may import a unit on a lower floor, or a module of its own package on its floor or
  lower (``adgen.experiments.analysis`` may import ``adgen.experiments.stats``);
- a package's ``__init__`` runs before any of its modules, so it sits on the floor of its lowest
  module: a package whose base module (``adgen.audience.filters``) sits below the campaign spec
  cannot import its upper modules from ``__init__``;
- no cycles, counting imports inside functions;
- every module is on a floor, and every unit of the block exists.

The table of who imports whom between packages (between the ``imports`` markers of the same
document) is generated from the code; ``--write`` rewrites it.

    python -m tests.import_layers           # check (``make lint`` runs this)
    python -m tests.import_layers --write   # check, and rewrite the generated table
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "adgen"
DOC = REPO / "docs" / "architecture.md"
BEGIN, END = "<!-- imports: begin", "<!-- imports: end -->"
_BLOCK = re.compile(r"^```layers\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    lazy: bool


@dataclass
class Graph:
    modules: dict[str, Path]
    edges: list[Edge] = field(default_factory=list)

    def is_package(self, name: str) -> bool:
        return self.modules[name].name == "__init__.py"


def module_graph(root: Path = REPO / PACKAGE) -> Graph:
    """Every module under ``root`` and every import of one of them (an import of a package's
    module counts as an import of that module; ``TYPE_CHECKING`` imports count too)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = Graph(modules)
    for name, path in modules.items():
        package = name if graph.is_package(name) else name.rpartition(".")[0]
        for node, lazy in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _targets(node, package, modules):
                graph.edges.append(Edge(name, target, node.lineno, lazy))
    return graph


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Each import statement, and whether it runs only when a function is called."""
    def walk(node: ast.AST, lazy: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, lazy
            inner = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from walk(child, lazy or inner)
    return walk(tree, False)


def _targets(node: ast.Import | ast.ImportFrom, package: str,
             modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in modules]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        module = ".".join([*base, *([node.module] if node.module else [])])
    else:
        module = node.module or ""
    if module not in modules:
        return []
    return [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
            for a in node.names]


@dataclass(frozen=True)
class Floors:
    """The floors of the layers block: each unit's floor (0 is the lowest)."""

    names: list[str]
    units: dict[str, int]

    @classmethod
    def read(cls, doc: Path = DOC) -> Floors:
        match = _BLOCK.search(doc.read_text(encoding="utf-8"))
        if match is None:
            raise SystemExit(f"{doc}: no ```layers block")
        lines = [line for line in match.group(1).splitlines() if line.strip()]
        names, units = [], {}
        for floor, line in enumerate(reversed(lines)):
            name, _, listed = line.partition(":")
            names.append(name.strip())
            for unit in listed.split():
                if unit in units:
                    raise SystemExit(f"{doc}: {unit} is on two floors")
                units[unit] = floor
        return cls(names, units)

    def unit_of(self, module: str) -> str | None:
        """The unit a module belongs to: the longest unit naming it or a package above it
        (the root package only names its own ``__init__``)."""
        parts = module.split(".")
        for end in range(len(parts), 0, -1):
            unit = ".".join(parts[:end])
            if unit in self.units and (unit != PACKAGE or module == PACKAGE):
                return unit
        return None


def package_of(module: str) -> str:
    """The top-level package or module of adgen a module is part of."""
    return ".".join(module.split(".")[:2])


def _shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def problems(graph: Graph, floors: Floors, doc: Path = DOC) -> list[str]:
    """Every way the code breaks the floors: unplaced modules, upward imports, cycles."""
    found = []
    floor: dict[str, int] = {}
    for module in graph.modules:
        unit = floors.unit_of(module)
        if unit is None:
            found.append(f"{module}: on no floor; add it (or its package) to the layers "
                         f"block of {_shown(doc)}")
        else:
            floor[module] = floors.units[unit]
    for unit in floors.units:
        if unit not in graph.modules:
            found.append(f"{_shown(doc)}: {unit} in the layers block is no module")
    for module in graph.modules:  # a package's __init__ runs before each of its modules
        if graph.is_package(module) and module != PACKAGE and module in floor:
            floor[module] = min(f for m, f in floor.items()
                                if m == module or m.startswith(module + "."))
    for edge in graph.edges:
        if edge.source not in floor or edge.target not in floor:
            continue
        down = floor[edge.target] < floor[edge.source]
        beside = (package_of(edge.target) == package_of(edge.source)
                  and floor[edge.target] <= floor[edge.source])
        if not (down or beside):
            found.append(
                f"{_shown(graph.modules[edge.source])}:{edge.line}: {edge.source} "
                f"({floors.names[floor[edge.source]]}) imports {edge.target} "
                f"({floors.names[floor[edge.target]]}): imports go down the floors of "
                f"{_shown(doc)}")
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return found


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle through each group of modules that import each other (Tarjan)."""
    edges: dict[str, set[str]] = {m: set() for m in graph.modules}
    for edge in graph.edges:
        if edge.source != edge.target:
            edges[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_cycle_in(group, edges) for group in groups]


def _cycle_in(group: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A closed path through ``group``'s first module."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for nxt in sorted(edges[node] & members):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                todo.append(nxt)
    return group


def imports_table(graph: Graph, floors: Floors) -> str:
    """Markdown: each unit of the floors (top floor first), the units it imports and the units
    that import it."""
    unit = {m: floors.unit_of(m) or m for m in graph.modules}
    uses: dict[str, set[str]] = {u: set() for u in floors.units}
    for edge in graph.edges:
        source, target = unit[edge.source], unit[edge.target]
        if source != target:
            uses.setdefault(source, set()).add(target)

    def name(u: str) -> str:
        return f"`{u if u == PACKAGE else u.removeprefix(PACKAGE + '.')}`"

    def names(units: set[str]) -> str:
        return ", ".join(name(u) for u in sorted(units)) or "–"

    rows = ["| unit | floor | imports | imported by |", "| --- | --- | --- | --- |"]
    for u in sorted(uses, key=lambda u: (-floors.units.get(u, -1), u)):
        users = {v for v, targets in uses.items() if u in targets}
        rows.append(f"| {name(u)} | {floors.names[floors.units[u]]} | {names(uses[u])} | "
                    f"{names(users)} |")
    return "\n".join(rows)


def table_region(text: str) -> tuple[int, int]:
    """Where the generated table sits in the document (between the markers' lines)."""
    start = text.index(BEGIN)
    start = text.index("\n", start) + 1
    return start, text.index(END)


def main(argv: list[str]) -> int:
    graph, floors = module_graph(), Floors.read()
    found = problems(graph, floors)
    text = DOC.read_text(encoding="utf-8")
    start, end = table_region(text)
    table = imports_table(graph, floors) + "\n"
    if text[start:end] != table:
        if "--write" in argv:
            DOC.write_text(text[:start] + table + text[end:], encoding="utf-8")
            print(f"rewrote the imports table of {DOC.relative_to(REPO)}")
        else:
            found.append(f"{DOC.relative_to(REPO)}: the imports table is out of date: run "
                         "python -m tests.import_layers --write")
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print(f"imports: {len(graph.modules)} modules on {len(floors.names)} floors, "
              "all imports downward, no cycles")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
