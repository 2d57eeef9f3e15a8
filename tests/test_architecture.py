"""The package's import graph and file names follow the architecture.

The graph is read from the source with ``ast``: every import counts, lazy
imports inside functions and ``TYPE_CHECKING`` imports included; relative
imports are resolved and ``from pkg import module`` is an edge to the module.

- no import cycle between modules;
- a package imports only the packages its row of ``MAY_IMPORT`` lists (the
  leaves in ``LEAVES`` are importable from everywhere, and a package always
  imports itself);
- one file name means one thing: two modules with the same basename are refused,
  except in the compatibility faces and for the names in ``SAME_CONCEPT``.
"""

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "dicomflow"

# Which top-level packages (and top-level modules) each one may import.
# Arrows point one way: a package never imports one that imports it.
MAY_IMPORT: dict[str, set[str]] = {
    # leaves: stdlib and prometheus-client only (settings may use errors, a leaf too)
    "errors": set(),
    "logs": set(),
    "metrics": set(),
    "settings": set(),
    "address": set(),  # a DICOM peer's address: settings, net and the pipeline API use it
    "durable": set(),  # fsync, atomic replace, private folders: engine and pipeline outputs
    "destinations": set(),  # where results go, typed: the pipeline API and the engine
    "tls": set(),  # TLS contexts and certificates: the receiver, the sender and the web
    "audit": set(),  # the audit trail's records and file: the receiver, the sender, the web
    "dicomflow": set(),  # the root package: its version
    # the layers
    "dicom": set(),
    "net": {"dicom"},
    "queue": {"dicom"},
    "cod": {"dicom"},
    # The public pipeline API; of the engine, only run() and the protocols it declares
    # (tests/node/test_engine_imports.py).
    "node": {"dicom", "net", "engine"},
    # Everything below web except node: the engine knows pipelines through its own protocols.
    "engine": {"dicom", "net", "queue", "cod", "services"},
    "services": {"dicom", "queue", "cod"},
    # faces: the import paths of the original systems, over what they face
    "server": {"dicom", "net", "node", "engine", "queue", "cod", "lib"},
    "lib": {"dicom", "net", "node", "engine", "queue", "cod"},
    "data_structures": {"dicom"},
    "constants": {"dicom", "net", "node"},
    "web": {"dicom", "net", "queue", "cod", "node", "engine", "services"},
    "cli": {"dicom", "net", "queue", "cod", "node", "engine", "services", "web"},
}

# Importable from everywhere.
LEAVES = {
    "errors",
    "logs",
    "metrics",
    "settings",
    "constants",
    "dicomflow",
    "address",
    "durable",
    "destinations",
    "tls",
    "audit",
}

# Leaf modules that are also faces (the original's ``dicomnode.constants``).
LEAVES_MODULES = {"dicomflow.constants"}

# Compatibility faces: import paths of the original systems, names only.
FACE_PACKAGES = {"server", "lib", "data_structures"}
FACE_MODULES = {
    "dicomflow.constants",
    "dicomflow.dicom.dimse",  # dicomnode.dicom.dimse: the sender and Address, from net
    "dicomflow.cod.cod_object",
    "dicomflow.cod.appender",
    "dicomflow.cod.series_metadata",
    "dicomflow.cod.utils",
    "dicomflow.cod.errors",
}

# Basenames shared by modules that mean the same concept, and why.
SAME_CONCEPT: dict[str, tuple[set[str], str]] = {
    "backend.py": (
        {"queue/backend.py", "queue/embedded/backend.py", "queue/rq/backend.py"},
        "the queue backend protocol and its two implementations",
    ),
    "grinders.py": (
        {"dicom/grinders.py", "node/grinders.py"},
        "grinders: the function grinders, and the pipeline API's grinder classes over them",
    ),
    "query_retrieve.py": (
        {"net/query_retrieve.py", "engine/query_retrieve.py"},
        "Query/Retrieve: the service types and provider protocol, and the archive's provider",
    ),
    "tls.py": (
        {"tls.py", "cli/tls.py"},
        "DICOM TLS and HTTPS: the contexts and certificates, and the command making a pair",
    ),
    "worker.py": (
        {"queue/worker.py", "queue/embedded/worker.py", "queue/rq/worker.py"},
        "the queue worker for any URL and the worker of each backend",
    ),
}


def _modules() -> dict[str, tuple[Path, bool, ast.Module]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found[".".join(parts)] = (path, is_package, tree)
    return found


MODULES = _modules()


def _deepest_known(dotted: str) -> str | None:
    parts = dotted.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def _imports(name: str, is_package: bool, tree: ast.Module) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every in-package import of module ``name``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _deepest_known(alias.name)
                if target:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            origin = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                origin = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                if f"{origin}.{alias.name}" in MODULES:
                    yield f"{origin}.{alias.name}", node.lineno
                else:
                    target = _deepest_known(origin)
                    if target:
                        yield target, node.lineno


GRAPH: dict[str, dict[str, int]] = {}
for _name, (_path, _is_package, _tree) in MODULES.items():
    GRAPH[_name] = {}
    for _target, _line in _imports(_name, _is_package, _tree):
        if _target != _name:
            GRAPH[_name].setdefault(_target, _line)


def _package(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _relative(name: str) -> str:
    return MODULES[name][0].relative_to(PACKAGE).as_posix()


def _cycles() -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in sorted(GRAPH[node]):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    return sorted(components)


def test_every_package_has_a_row() -> None:
    missing = sorted({_package(name) for name in MODULES} - set(MAY_IMPORT))
    assert not missing, f"packages missing from MAY_IMPORT: {missing}"


def test_no_import_cycle() -> None:
    problems = []
    for component in _cycles():
        members = set(component)
        edges = [
            f"    {_relative(name)}:{line} imports {target}"
            for name in component
            for target, line in sorted(GRAPH[name].items())
            if target in members
        ]
        problems.append(" <-> ".join(component) + "\n" + "\n".join(edges))
    assert not problems, "import cycles:\n" + "\n".join(problems)


def _is_face(name: str) -> bool:
    return name in FACE_MODULES or _package(name) in FACE_PACKAGES


def test_imports_follow_the_package_table() -> None:
    """Faces sit on top of the layers they face (never web or cli), and no layer
    imports a face, so a face inside a layer's folder (``dicom/dimse.py``) makes no
    cycle between packages."""
    problems = []
    for name, targets in sorted(GRAPH.items()):
        source = _package(name)
        if _is_face(name):
            allowed = set(MAY_IMPORT) - {"web", "cli"}
        else:
            allowed = MAY_IMPORT.get(source, set()) | LEAVES | {source}
        for target, line in sorted(targets.items()):
            if _is_face(target) and not _is_face(name) and target not in LEAVES_MODULES:
                problems.append(f"{_relative(name)}:{line}: {source} imports the face {target}")
                continue
        for target, line in sorted(targets.items()):
            if _package(target) not in allowed:
                problems.append(f"{_relative(name)}:{line}: {source} imports {target}")
    assert not problems, "imports against the package table:\n" + "\n".join(problems)


def test_one_file_name_means_one_thing() -> None:
    by_basename: dict[str, set[str]] = defaultdict(set)
    for name, (path, _, _) in MODULES.items():
        if path.name in {"__init__.py", "__main__.py"} or name in FACE_MODULES:
            continue
        if _package(name) in FACE_PACKAGES:
            continue
        by_basename[path.name].add(_relative(name))
    problems = []
    for basename, paths in sorted(by_basename.items()):
        if len(paths) < 2:
            continue
        allowed = SAME_CONCEPT.get(basename, (set(), ""))[0]
        if not paths <= allowed:
            problems.append(f"{basename}: {' '.join(sorted(paths))}")
    assert not problems, "file names that mean more than one thing:\n" + "\n".join(problems)


def _base_names(node: ast.ClassDef) -> set[str]:
    names = set()
    for base in node.bases:
        if isinstance(base, ast.Name):
            names.add(base.id)
        elif isinstance(base, ast.Attribute):
            names.add(base.attr)
    return names


def test_every_exception_lives_in_errors() -> None:
    """One exception tree: a class deriving from an exception is defined in ``errors.py``
    (faces re-export the original names)."""
    problems = []
    for name, (_, _, tree) in sorted(MODULES.items()):
        if name == "dicomflow.errors":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                base == "Exception" or base.endswith(("Error", "Exception"))
                for base in _base_names(node)
            ):
                problems.append(f"{_relative(name)}:{node.lineno}: {node.name}")
    assert not problems, "exceptions outside errors.py:\n" + "\n".join(problems)
