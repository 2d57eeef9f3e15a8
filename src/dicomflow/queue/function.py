"""Job functions named by text: ``"package.module:qualname"`` or ``"package.module.function"``.

The second form is the registry's full function name (``"service.worker.run"``):
the longest importable module prefix is imported and the rest looked up in it.
"""

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from dicomflow.errors import QueueError

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
FUNCTION_NAME = re.compile(rf"(?:{_DOTTED}:{_DOTTED}|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
MOVED = {
    "dicomflow.node.worker:process_round": "dicomflow.engine.round_job:process_round",
    "dicomflow.node.archive:archive_series": "dicomflow.engine.series_archive:archive_series",
}
"""dicomflow's own job functions that moved: jobs queued under the old name still run."""


def check_function_name(name: object) -> str:
    """Return ``name`` if it has the form of a function name, else raise QueueError."""
    if not isinstance(name, str) or not FUNCTION_NAME.fullmatch(name):
        raise QueueError(
            f"Job function {name!r} is not a name of the form "
            '"package.module:qualname" or "package.module.function".'
        )
    return name


def resolve_function(name: str) -> Callable[..., Any]:
    """Import the callable named ``name``.

    Raises:
        QueueError: if no module of the name can be imported or it lacks the attribute.
        ImportError: if the module exists but fails to import (a bug in the module).
    """
    check_function_name(name)
    name = MOVED.get(name, name)
    if ":" in name:
        module_name, _, qualname = name.partition(":")
        return _attribute(name, module_name, importlib.import_module(module_name), qualname)
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if _is_missing(module_name, exc):
                continue
            raise
        return _attribute(name, module_name, module, ".".join(parts[split:]))
    raise QueueError(f'Job function "{name}": no module of that name can be imported.')


def _is_missing(module_name: str, exc: ModuleNotFoundError) -> bool:
    """Whether ``exc`` says ``module_name`` itself (or a parent package) does not exist."""
    missing = exc.name or ""
    return module_name == missing or module_name.startswith(missing + ".")


def _attribute(
    name: str, module_name: str, module: ModuleType, qualname: str
) -> Callable[..., Any]:
    target: Any = module
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise QueueError(
                f'Job function "{name}": module {module_name} has no attribute "{qualname}".'
            ) from None
    if not callable(target):
        raise QueueError(f'Job function "{name}" is a {type(target).__name__}, not a callable.')
    return target  # type: ignore[no-any-return]


def load_module_from_file(path: str, name: str) -> ModuleType:
    """Import the Python file at ``path`` as module ``name`` (registered in ``sys.modules``;
    removed again if executing it fails)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f'Cannot load "{path}" as a Python module.')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
