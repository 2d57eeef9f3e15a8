"""Callback functions: found in a service's registry ``.py`` files, loaded by path.

Each file is imported under a module name of its own
(``_dicomflow_registry_<service>_<stem>_<hash of path>``), so two services may
both ship a ``callbacks.py`` with a function of the same name.

A registry folder with an ``__init__.py`` is a package, as in the seed: it is
imported as one (under such a private name, so its relative imports work and
it never shadows the service's worker package of the same name), and its
callbacks are the package's names, re-exports included. A callback written as
in the seed, ``"service.function"`` (``"temp.callback"``, ``"ms-sub.callback"``),
names the registry package of ``service`` (this one, or for the node's
``scheduler.json``, any installed one) and a name in it.
"""

import contextlib
import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from dicomflow.errors import ServiceDefinitionError
from dicomflow.services.job_spec import JobSpec

Callback = Callable[..., Any]


def load_callbacks(
    service: str, folder: Path, specs: Sequence[JobSpec], others: Path | None = None
) -> dict[str, Callback]:
    """The callback function of every job in ``specs``, by callback name.

    ``folder`` is the service's registry folder; ``others`` the folder holding every
    installed service's registry folder, for ``"service.function"`` callbacks naming
    another service.

    Raises:
        ServiceDefinitionError: if a file fails to import, or a callback is missing,
            defined in more than one file, or not callable.
    """
    callbacks: dict[str, Callback] = {}
    plain = [spec for spec in specs if "." not in spec.callback]
    if plain:
        modules = _registry_modules(service, folder)
        callbacks |= {spec.callback: _find(spec, modules, folder) for spec in plain}
    for spec in specs:
        if "." in spec.callback:
            callbacks[spec.callback] = _dotted(spec, service, folder, others)
    return callbacks


def _registry_modules(service: str, folder: Path) -> list[ModuleType]:
    if (folder / "__init__.py").is_file():
        return [_load_module(service, folder / "__init__.py", package=True)]
    return [_load_module(service, path) for path in sorted(folder.glob("*.py"))]


def _dotted(spec: JobSpec, service: str, folder: Path, others: Path | None) -> Callback:
    """``"service.name[.name]"``: the registry package of ``service``, then attributes
    (submodules imported as needed)."""
    top, *names = spec.callback.split(".")
    where = folder if top == service or others is None else others / top
    if not (where / "__init__.py").is_file():
        raise ServiceDefinitionError(
            f'{spec.where}: field "callback" is "{spec.callback}", but {where} is not a '
            "registry package (no __init__.py)."
        )
    target: Any = _load_module(top, where / "__init__.py", package=True)
    for index, name in enumerate(names):
        if not hasattr(target, name) and isinstance(target, ModuleType):
            with contextlib.suppress(ImportError):
                importlib.import_module(f"{target.__name__}.{name}")
        if not hasattr(target, name):
            raise ServiceDefinitionError(
                f'{spec.where}: field "callback" names "{spec.callback}", but '
                f'{".".join([top, *names[:index]])} ({where}) has no "{name}".'
            )
        target = getattr(target, name)
    if not callable(target):
        raise ServiceDefinitionError(
            f'{spec.where}: callback "{spec.callback}" is {type(target).__name__}, not a function.'
        )
    callback: Callback = target
    return callback


def _load_module(service: str, path: Path, *, package: bool = False) -> ModuleType:
    name = _module_name(service, path.parent if package else path)
    for loaded in [key for key in sys.modules if key.startswith(f"{name}.")]:
        del sys.modules[loaded]  # a package's submodules are read afresh with it
    locations = [str(path.parent)] if package else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=locations)
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
