"""Validators: the values of an input's ``required_values`` beyond plain equality.

An input accepts an instance when, for every ``tag: expected`` of its
``required_values``, the instance's value matches ``expected``:

- a :class:`Validator` (``RegexValidator``, ``OptionsValidator``,
  ``NegatedValidator``, ...) is called with the value and decides;
- a compiled regular expression (``re.compile(...)``) is *searched* in the value
  (``pattern.search``: it may match anywhere unless anchored with ``^``/``$``);
- any other value means equality (:class:`EqualityValidator`): numbers compare by
  value (``"1.0"`` read as DS matches ``1``), strings without their padding
  spaces, a ``UID`` as its string, a multi-valued attribute as a whole
  (``["ORIGINAL", "PRIMARY"]``), and a list against a single value means "one of".

A regular expression given as a ``str`` to :class:`RegexValidator` may use ``*``
as a wildcard for ``.*`` (:func:`from_wildcard`). Values that are not text (a
``PersonName``, a number, a multi-valued attribute) are matched as their DICOM
text: ``str(value)``, multi-values joined with a backslash.
"""

import re
from collections.abc import Iterable
from typing import Any

from pydicom.multival import MultiValue

__all__ = [
    "CaselessRegexValidator",
    "EqualityValidator",
    "NegatedValidator",
    "OptionsValidator",
    "RegexValidator",
    "Validator",
    "escape_pattern",
    "from_wildcard",
    "get_validator_for_value",
    "value_text",
    "values_equal",
]


class Validator:
    """A test of one attribute's value; subclasses implement ``__call__``."""

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __call__(self, target: Any) -> bool:
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class EqualityValidator(Validator):
    """Matches a value equal to ``value`` (see the module's rules for equality)."""

    def __call__(self, target: Any) -> bool:
        return values_equal(target, self.value)


class RegexValidator(Validator):
    """Matches a value in which ``value`` (a pattern, or a ``str`` with ``*`` wildcards)
    is found (``re.search``)."""

    def __init__(self, value: str | re.Pattern[str]) -> None:
        super().__init__(value)
        self.pattern = from_wildcard(value) if isinstance(value, str) else value

    def __call__(self, target: Any) -> bool:
        return self.pattern.search(value_text(target)) is not None


class CaselessRegexValidator(RegexValidator):
    """As :class:`RegexValidator`, ignoring case (a ``str`` pattern is lower-cased)."""

    def __init__(self, value: str | re.Pattern[str]) -> None:
        super().__init__(value.lower() if isinstance(value, str) else value)

    def __call__(self, target: Any) -> bool:
        return self.pattern.search(value_text(target).lower()) is not None


class OptionsValidator(Validator):
    """Matches a value that ``validator(option)`` accepts for one of ``options``."""

    def __init__(
        self, value: Iterable[Any], validator: type[Validator] = EqualityValidator
    ) -> None:
        super().__init__(value)
        self.options = list(value)
        self.internal_validator = validator

    def __call__(self, target: Any) -> bool:
        return any(self.internal_validator(option)(target) for option in self.options)


class NegatedValidator(Validator):
    """Matches a value that ``validator`` does not match."""

    def __init__(self, validator: Validator) -> None:
        super().__init__(validator)
        self.validator = validator

    def __call__(self, target: Any) -> bool:
        return not self.validator(target)


def get_validator_for_value(value: Any) -> Validator:
    """The validator a ``required_values`` entry means: itself if a :class:`Validator`,
    a :class:`RegexValidator` for a compiled pattern, else an :class:`EqualityValidator`."""
    if isinstance(value, Validator):
        return value
    if isinstance(value, re.Pattern):
        return RegexValidator(value)
    return EqualityValidator(value)


def from_wildcard(text: str) -> re.Pattern[str]:
    """Compile ``text`` as a regular expression in which ``*`` stands for ``.*``."""
    return re.compile(text.replace("*", ".*"))


def escape_pattern(text: str) -> re.Pattern[str]:
    """Compile ``text`` with ``[``, ``]`` and ``_`` taken literally and ``*`` as ``.*``."""
    escaped = text.replace("[", r"\[").replace("]", r"\]").replace("*", ".*")
    return re.compile(escaped.replace("_", r"\_"))


def value_text(value: Any) -> str:
    """A DICOM value as text: itself if a ``str``, multi-values joined by ``\\``."""
    if isinstance(value, str):
        return value
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(value_text(item) for item in value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "" if value is None else str(value)


def values_equal(value: Any, expected: Any) -> bool:
    """Tell whether the attribute value ``value`` equals the required ``expected``."""
    if isinstance(expected, list | tuple) and not isinstance(value, MultiValue | list | tuple):
        return any(_equal(value, option) for option in expected)  # a list means "one of"
    return _equal(value, expected)


def _equal(value: Any, expected: Any) -> bool:
    if isinstance(value, int | float) and isinstance(expected, int | float):
        return bool(value == expected)  # IS/DS by number: "1.0" matches 1
    if isinstance(value, str) or hasattr(value, "original_string"):
        return str(value).strip() == str(expected).strip()
    return bool(value == expected)
