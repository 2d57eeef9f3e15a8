"""Print size, import-cycle and naming figures for ``src/dicomflow``.

Run by hand::

    .venv/bin/python scripts/codemetrics.py            # src/dicomflow
    .venv/bin/python scripts/codemetrics.py path/to/package

Figures:

- the number of modules;
- file sizes in lines (median, p90, max and the ten largest files);
- function sizes in code lines, i.e. without blank lines, comment-only lines
  and docstrings (median, p90, max and the ten longest functions; a nested
  function counts in its own right and inside the function that holds it);
- module-level import cycles: the strongly connected components of the import
  graph, counting every import (lazy imports inside functions and
  ``TYPE_CHECKING`` imports included; ``from pkg import module`` is an edge to
  the module, relative imports are resolved);
- package-level cycles: the same graph folded onto the top-level packages
  (``queue``, ``web``, ...; a top-level module is its own package);
- file basenames that occur more than once (``__init__.py`` and
  ``__main__.py`` left out).

Only the standard library is used (``ast``, ``tokenize``).
"""

import argparse
import ast
import io
import statistics
import sys
import tokenize
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PACKAGE = ROOT / "src" / "dicomflow"


@dataclass
class Module:
    """One ``.py`` file of the measured package."""

    name: str  # dotted, e.g. dicomflow.queue.job
    path: Path
    is_package: bool  # an ``__init__.py``
    source: str
    tree: ast.Module
    imports: set[str] = field(default_factory=set)


def load_modules(package_dir: Path) -> dict[str, Module]:
    """Parse every module under ``package_dir``, keyed by dotted name."""
    base = package_dir.parent
    modules: dict[str, Module] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        source = path.read_text(encoding="utf-8")
        name = ".".join(parts)
        modules[name] = Module(name, path, is_package, source, ast.parse(source, str(path)))
    return modules


def _resolve_relative(module: Module, level: int, target: str | None) -> str:
    """The absolute dotted name of a ``from ...target import`` in ``module``."""
    parts = module.name.split(".")
    if not module.is_package:
        parts = parts[:-1]  # the package holding the module
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    if target:
        parts = [*parts, *target.split(".")]
    return ".".join(parts)


def _deepest_known(dotted: str, known: Iterable[str]) -> str | None:
    """The longest prefix of ``dotted`` that is a module of the package."""
    names = set(known)
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in names:
            return candidate
        parts.pop()
    return None


def compute_imports(modules: dict[str, Module]) -> None:
    """Fill ``Module.imports`` with every in-package module each one imports."""
    known = set(modules)
    for module in modules.values():
        found: set[str] = set()
        for node in ast.walk(module.tree):  # lazy and TYPE_CHECKING imports included
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _deepest_known(alias.name, known)
                    if target:
                        found.add(target)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    origin = _resolve_relative(module, node.level, node.module)
                else:
                    origin = node.module or ""
                for alias in node.names:
                    submodule = f"{origin}.{alias.name}"
                    if submodule in known:  # from pkg import module
                        found.add(submodule)
                        continue
                    target = _deepest_known(origin, known)
                    if target:
                        found.add(target)
        found.discard(module.name)
        module.imports = found


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); only components of two or more nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return sorted(components)


def top_package(name: str) -> str:
    """``dicomflow.queue.rq.backend`` -> ``queue``; ``dicomflow.errors`` -> ``errors``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def code_lines(source: str) -> set[int]:
    """Line numbers holding code: not blank, not comment-only, not a docstring."""
    lines: set[int] = set()
    skip = {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
        tokenize.ENCODING,
    }
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                end = body[0].end_lineno or body[0].lineno
                lines.difference_update(range(body[0].lineno, end + 1))
    return lines


def functions(module: Module) -> Iterator[tuple[str, int]]:
    """``(qualified name, code lines)`` of every function and method."""
    code = code_lines(module.source)

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                end = child.end_lineno or child.lineno
                # Decorators are not counted: the function starts at ``def``.
                yield name, sum(1 for line in range(child.lineno, end + 1) if line in code)
                yield from walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(module.tree, "")


def percentile(values: list[int], fraction: float) -> int:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def report(package_dir: Path) -> str:
    modules = load_modules(package_dir)
    compute_imports(modules)
    base = package_dir.parent
    out: list[str] = [f"package: {package_dir.relative_to(ROOT)}"]
    out.append(f"modules: {len(modules)}")

    sizes = {m.path.relative_to(base).as_posix(): m.source.count("\n") for m in modules.values()}
    values = list(sizes.values())
    out.append(
        f"file lines: total {sum(values)}, median {statistics.median(values):g}, "
        f"p90 {percentile(values, 0.9)}, max {max(values)}"
    )
    out.append("largest files:")
    for path, lines in sorted(sizes.items(), key=lambda item: (-item[1], item[0]))[:10]:
        out.append(f"  {lines:6d}  {path}")

    lengths: dict[str, int] = {}
    for module in modules.values():
        for name, count in functions(module):
            lengths[f"{module.name}:{name}"] = count
    counts = list(lengths.values())
    out.append(
        f"functions: {len(counts)}; code lines: median {statistics.median(counts):g}, "
        f"p90 {percentile(counts, 0.9)}, max {max(counts)}"
    )
    out.append("longest functions:")
    for name, count in sorted(lengths.items(), key=lambda item: (-item[1], item[0]))[:10]:
        out.append(f"  {count:6d}  {name}")

    graph = {name: module.imports for name, module in modules.items()}
    edges = sum(len(targets) for targets in graph.values())
    cycles = strongly_connected(graph)
    out.append(f"import edges: {edges}")
    out.append(f"module-level import cycles: {len(cycles)}")
    for component in cycles:
        out.append(f"  ({len(component)}) " + " ".join(component))
        members = set(component)
        for member in component:
            inside = sorted(graph[member] & members)
            out.append(f"      {member} -> {', '.join(inside)}")

    packages: dict[str, set[str]] = defaultdict(set)
    for name, targets in graph.items():
        source_package = top_package(name)
        packages[source_package]
        for target in targets:
            if top_package(target) != source_package:
                packages[source_package].add(top_package(target))
    package_cycles = strongly_connected(packages)
    out.append(f"package-level import cycles: {len(package_cycles)}")
    for component in package_cycles:
        out.append(f"  ({len(component)}) " + " ".join(component))
        members = set(component)
        for member in component:
            inside = sorted(packages[member] & members)
            witnesses = sorted(
                f"{name} -> {target}"
                for name, module in modules.items()
                if top_package(name) == member
                for target in module.imports
                if top_package(target) in inside
            )
            out.append(f"      {member} -> {', '.join(inside)}")
            for witness in witnesses[:5]:
                out.append(f"          {witness}")
            if len(witnesses) > 5:
                out.append(f"          ... {len(witnesses) - 5} more")

    names = Counter(
        m.path.name for m in modules.values() if m.path.name not in {"__init__.py", "__main__.py"}
    )
    duplicates = sorted(name for name, count in names.items() if count > 1)
    out.append(f"duplicate basenames: {len(duplicates)}")
    for name in duplicates:
        paths = sorted(
            m.path.relative_to(base).as_posix() for m in modules.values() if m.path.name == name
        )
        out.append(f"  {name}: {' '.join(paths)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", type=Path, default=DEFAULT_PACKAGE)
    args = parser.parse_args(argv)
    print(report(args.package.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
