"""Callback functions: found in a service's registry ``.py`` files, loaded by path.

Each file is imported under a module name of its own
(``_dicomflow_registry_<service>_<stem>_<hash of path>``), so two services may
both ship a ``callbacks.py`` with a function of the same name.
"""

import hashlib
import importlib.util
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from dicomflow.errors import ServiceDefinitionError
from dicomflow.services.settings import JobSpec

Callback = Callable[..., Any]


def load_callbacks(service: str, folder: Path, specs: Sequence[JobSpec]) -> dict[str, Callback]:
    """The callback function of every job in ``specs``, by callback name.

    Raises:
        ServiceDefinitionError: if a file fails to import, or a callback is missing,
            defined in more than one file, or not callable.
    """
    modules = [_load_module(service, path) for path in sorted(folder.glob("*.py"))]
    return {spec.callback: _find(spec, modules, folder) for spec in specs}


def _load_module(service: str, path: Path) -> ModuleType:
    name = _module_name(service, path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ServiceDefinitionError(f'Service "{service}": {path} cannot be loaded as Python.')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look a module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ServiceDefinitionError(
            f'Service "{service}": {path} failed to import: {type(exc).__name__}: {exc}'
        ) from exc
    return module


def _module_name(service: str, path: Path) -> str:
    slug = re.sub(r"\W", "_", f"{service}_{path.stem}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"_dicomflow_registry_{slug}_{digest}"


def _find(spec: JobSpec, modules: Sequence[ModuleType], folder: Path) -> Callback:
    found = {
        id(value): (module, value)
        for module in modules
        if (value := getattr(module, spec.callback, None)) is not None
    }
    if not found:
        files = ", ".join(str(module.__file__) for module in modules) or f"no .py file in {folder}"
        raise ServiceDefinitionError(
            f'{spec.where}: field "callback" names "{spec.callback}", which is not defined '
            f"in {files}."
        )
    if len(found) > 1:
        files = ", ".join(str(module.__file__) for module, _ in found.values())
        raise ServiceDefinitionError(
            f'{spec.where}: callback "{spec.callback}" is defined differently in {files}.'
        )
    module, value = next(iter(found.values()))
    if not callable(value):
        raise ServiceDefinitionError(
            f'{spec.where}: callback "{spec.callback}" in {module.__file__} is '
            f"{type(value).__name__}, not a function."
        )
    callback: Callback = value
    return callback
