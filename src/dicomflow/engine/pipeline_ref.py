"""A picklable reference to a pipeline class, resolvable in a worker process."""

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from dicomflow.queue.function import load_module_from_file


@dataclass(frozen=True)
class PipelineRef:
    """Where a pipeline class lives: module name, qualified name and source file."""

    module: str
    qualname: str
    path: str | None = None

    @classmethod
    def of(cls, pipeline_class: object) -> "PipelineRef":
        """Where ``pipeline_class`` (a class) lives."""
        module_name, qualname = str(pipeline_class.__module__), qualified_name(pipeline_class)
        path = getattr(sys.modules.get(module_name), "__file__", None)
        return cls(module_name, qualname, path)

    def resolve(self) -> Any:
        """Return the class, importing its module (or loading its file) if needed."""
        target: Any = self._module()
        for part in self.qualname.split("."):
            target = getattr(target, part)
        return target

    def _module(self) -> ModuleType:
        names = ["__mp_main__", "__main__"] if self.module in ("__main__", "__mp_main__") else []
        for name in [*names, self.module]:
            module = sys.modules.get(name)
            if module is not None and _defines(module, self.qualname):
                return module
        if self.path is not None:
            # The pipeline's folder goes last on sys.path, so that its sibling modules
            # import but a file there named like a standard module (queue.py) shadows nothing.
            folder = str(Path(self.path).resolve().parent)
            if folder not in sys.path:
                sys.path.append(folder)
        if not names:
            try:
                return importlib.import_module(self.module)
            except ImportError:
                if self.path is None:
                    raise
        return load_module_from_file(self.path or "", "__mp_main__" if names else self.module)


def qualified_name(pipeline_class: object) -> str:
    """The ``__qualname__`` of a class."""
    return str(getattr(pipeline_class, "__qualname__"))  # noqa: B009 - any class has one


def _defines(module: ModuleType, qualname: str) -> bool:
    return hasattr(module, qualname.split(".")[0])
