"""The engine knows pipelines only through its protocols: it imports no pipeline module of
dicomflow.node, and dicomflow.node imports of the engine only its assembly function and the
protocols it declares (the contract the pipeline API implements)."""

import ast
from pathlib import Path

import dicomflow

PACKAGE = Path(dicomflow.__file__).parent


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top, inside functions or for type checking."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_engine_imports_no_pipeline_module() -> None:
    found = {
        f"{path.name}: {name}"
        for path in (PACKAGE / "engine").glob("*.py")
        for name in imported(path)
        if name == "dicomflow.node" or name.startswith("dicomflow.node.")
    }
    assert not found


def test_the_pipeline_api_imports_only_the_engines_assembly_function() -> None:
    found = {
        f"{path.name}: {name}"
        for path in (PACKAGE / "node").glob("*.py")
        for name in imported(path)
        if name.startswith("dicomflow.engine")
        and name.split(".")[:3] != ["dicomflow", "engine", "protocols"]
        and name not in {"dicomflow.engine.assembly", "dicomflow.engine.assembly.run"}
    }
    assert not found
