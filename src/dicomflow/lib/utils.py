"""The pipeline library's ``lib.utils`` helpers that migrating code calls.

``is_picklable`` is dicomflow's own (:mod:`dicomflow.node.processor`); the other
small helpers exist here only for code written against the original. Not kept:
``drop_privileges`` (run the node as an unprivileged user instead) and
``process_status`` (it needs psutil, which dicomflow does not depend on).
"""

import importlib.util
import logging
import multiprocessing
import sys
import warnings
from argparse import ArgumentTypeError
from collections.abc import Callable
from threading import Thread
from types import ModuleType
from typing import Any

from dicomflow.node.pipeline import PIPELINE_LOGGER
from dicomflow.node.processor import is_picklable

TRUE_WORDS = frozenset({"yes", "true", "t", "y", "1"})
FALSE_WORDS = frozenset({"no", "false", "f", "n", "0"})
BYTE_UNITS = ((1024**4, "TB"), (1024**3, "GB"), (1024**2, "MB"), (1024, "kB"))


def str2bool(value: str | bool) -> bool:
    """``"yes"``/``"true"``/``"t"``/``"y"``/``"1"`` and their negatives, any case."""
    if isinstance(value, bool):
        return value
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise ArgumentTypeError(f'Boolean value expected; got "{value}".')


def prefixInt(number: int, minLength: int = 4) -> str:
    """``number`` as text, zero-padded to ``minLength`` digits."""
    return str(number).zfill(minLength)


def human_readable_byte_count(number_of_bytes: int) -> str:
    """``1536`` -> ``"1.50 kB"``; under a kilobyte in bytes; ``"0 KB"`` for nothing."""
    if number_of_bytes <= 0:
        return "0 KB"
    for factor, unit in BYTE_UNITS:
        if factor <= number_of_bytes:
            return f"{number_of_bytes / factor:.2f} {unit}"
    return f"{number_of_bytes} bytes"


def type_corrosion(*types: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function so each positional argument is converted to its type."""

    def decorator(function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if len(args) != len(types):
                raise TypeError(
                    f"{function.__name__} expected {len(types)} arguments, "
                    f"but received {len(args)} arguments."
                )
            converted = [a if isinstance(a, t) else t(a) for t, a in zip(types, args, strict=True)]
            return function(*converted, **kwargs)

        return wrapper

    return decorator


def spawn_thread(
    function: Callable[..., Any], *args: Any, name: str | None = None, **kwargs: Any
) -> Thread:
    """Start ``function(*args)`` in a thread and return it (``logger=`` to log where)."""
    logger = kwargs.get("logger") or logging.getLogger(PIPELINE_LOGGER)
    thread = Thread(target=function, args=args, name=name)
    thread.start()
    logger.debug("spawned thread %s with %s - %s", thread.native_id, function.__name__, name)
    return thread


def spawn_process(
    function: Callable[..., Any],
    *args: Any,
    start: bool = True,
    name: str | None = None,
    context: Any = None,
    **kwargs: Any,
) -> Any:
    """A process running ``function(*args)`` (``spawn`` context unless given), started."""
    logger = kwargs.get("logger") or logging.getLogger(PIPELINE_LOGGER)
    process = (context or multiprocessing.get_context("spawn")).Process(
        target=function, args=args, name=name
    )
    if start:
        process.start()
    logger.debug("spawned process %s with %s", process.pid, function.__name__)
    return process


def name(obj: object) -> str:
    """The name of ``obj``'s class."""
    return type(obj).__name__


def optionalAttribute(obj: object, attribute: str, default_value: Any) -> Any:
    """``getattr(obj, attribute, default_value)``."""
    return getattr(obj, attribute, default_value)


def deprecation_message(deprecated_module_path: str, new_module_path: str) -> None:
    """Warn that a module moved."""
    warnings.warn(
        f"{deprecated_module_path} has been moved to {new_module_path}",
        DeprecationWarning,
        stacklevel=2,
    )


def lazy_import(module_name: str) -> ModuleType:
    """Import ``module_name`` lazily: its code runs when an attribute is first used."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f'No module named "{module_name}".', name=module_name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    loader.exec_module(module)
    return module


__all__ = [
    "deprecation_message",
    "human_readable_byte_count",
    "is_picklable",
    "lazy_import",
    "name",
    "optionalAttribute",
    "prefixInt",
    "spawn_process",
    "spawn_thread",
    "str2bool",
    "type_corrosion",
]
