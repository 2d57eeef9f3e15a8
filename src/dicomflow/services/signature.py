"""Calling user functions (callbacks, workers) by keyword, as the seed does.

Arguments are passed by name. A function that takes ``**kwargs`` gets them
all; one that does not gets only the parameters it declares, so a narrow
signature never fails on an extra argument it did not ask for.
"""

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def call_with_keywords(function: Callable[..., T], arguments: Mapping[str, Any]) -> T:
    """Call ``function`` with those of ``arguments`` it accepts."""
    return function(**accepted_keywords(function, arguments))


def accepted_keywords(function: Callable[..., Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``arguments`` that ``function`` accepts by keyword."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature: pass everything
        return dict(arguments)
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return dict(arguments)
    names = {parameter.name for parameter in parameters if parameter.kind in _NAMED}
    return {name: value for name, value in arguments.items() if name in names}
