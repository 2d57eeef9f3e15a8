"""Load a pipeline class from ``file.py``, ``file.py:Class`` or ``package.module:Class``."""

import importlib
import inspect
import sys
from pathlib import Path
from types import ModuleType

from dicomflow.errors import PipelineLoadError
from dicomflow.node.pipeline import AbstractPipeline, check_pipeline
from dicomflow.queue.function import load_module_from_file


def load_pipeline(spec: str) -> type[AbstractPipeline]:
    """Return the pipeline class named by ``spec``, checked."""
    location, _, class_name = spec.partition(":")
    module = _load_module(location)
    pipeline_class = _pick_class(module, class_name, location)
    check_pipeline(pipeline_class)
    return pipeline_class


def _load_module(location: str) -> ModuleType:
    path = Path(location)
    try:
        if path.suffix == ".py":
            return _load_file(path)
        return importlib.import_module(location)
    except PipelineLoadError:
        raise
    except Exception as exc:
        raise PipelineLoadError(
            f'Cannot load pipeline "{location}": {type(exc).__name__}: {exc}'
        ) from exc


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise PipelineLoadError(f'Pipeline file "{path}" does not exist.')
    path = path.resolve()
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    existing = sys.modules.get(path.stem)
    if existing is None or Path(getattr(existing, "__file__", "") or "").resolve() == path:
        try:
            return importlib.import_module(path.stem)
        except ImportError as exc:
            if exc.name != path.stem:
                raise
    return load_module_from_file(str(path), f"dicomflow_pipeline_{path.stem}")


def _pick_class(module: ModuleType, class_name: str, location: str) -> type[AbstractPipeline]:
    if class_name:
        found = getattr(module, class_name, None)
        if not (inspect.isclass(found) and issubclass(found, AbstractPipeline)):
            raise PipelineLoadError(
                f'"{location}" has no AbstractPipeline subclass "{class_name}".'
            )
        return found
    candidates = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, AbstractPipeline)
        and value is not AbstractPipeline
        and value.__module__ == module.__name__
    ]
    if len(candidates) != 1:
        names = ", ".join(sorted(c.__name__ for c in candidates)) or "none"
        raise PipelineLoadError(
            f'"{location}" must define exactly one AbstractPipeline subclass (found: {names}); '
            f'name one with "{location}:ClassName".'
        )
    return candidates[0]
