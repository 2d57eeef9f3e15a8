"""Matching keys as SQL conditions on the catalog's indexed columns.

Each key on an indexed column becomes a condition that selects exactly the rows
:meth:`Query.matches` accepts, for rows whose columns stand exactly for their
attributes (see :mod:`dicomflow.cod.catalog_rows`); keys on other attributes, and
the few a condition would serve badly (many wildcards, huge UID lists), are left
to :meth:`Query.matches`. Values are always bound parameters; wildcard characters
of SQL itself in a value are escaped.
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dicomflow.cod.catalog_rows import ColumnKind
from dicomflow.dicom.matching import Key, Query, _normal

MAX_STARS = 3  # SQL pattern matching backtracks; more wildcards are matched in Python
MAX_CHOICES = 500
NOTHING = "1 = 0"

# An indexed attribute at one level: its SQL expression and how it compares.
Columns = dict[str, tuple[str, ColumnKind]]
# The dialect's wildcard condition: (expression, pattern with * and ?) -> (sql, parameter)
Wildcard = Callable[[str, str], tuple[str, str]]


@dataclass
class Filter:
    """SQL conditions (all must hold) with their parameters; ``exact`` when every key
    became one (no key is left to check in Python)."""

    conditions: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    exact: bool = True
    tables: set[str] = field(default_factory=set)  # the aliases the conditions read

    def add(self, condition: str, table: str, *params: Any) -> None:
        self.conditions.append(condition)
        self.params.extend(params)
        self.tables.add(table)

    def where(self) -> str:
        return " AND ".join(self.conditions) if self.conditions else "1 = 1"


def pushdown(query: Query, columns: Columns, wildcard: Wildcard) -> Filter:
    """The conditions for the keys of ``query`` on ``columns``."""
    result = Filter()
    for key in query.keys:
        if key.value in ("", "*"):
            continue  # universal: returns the attribute, matches everything
        column = columns.get(key.tag)
        condition = None if column is None else _condition(key, *column, wildcard)
        if column is None or condition is None:
            result.exact = False
        else:
            result.add(condition[0], column[0].partition(".")[0], *condition[1])
    return result


def _condition(
    key: Key, expression: str, kind: ColumnKind, wildcard: Wildcard
) -> tuple[str, list[Any]] | None:
    value = key.value
    if kind is ColumnKind.UID:
        return _uids(expression, value)
    if kind is ColumnKind.NUMBER:
        return _number(expression, value)
    if kind in (ColumnKind.DATE, ColumnKind.TIME):
        return None if "\x00" in value else _range(expression, kind, value)
    if kind is ColumnKind.CODE:
        choices = [choice.strip() for choice in value.split(",")]
        if len(choices) > MAX_CHOICES:
            return None
        return _any_of([_text(expression, choice, wildcard) for choice in choices])
    if kind is ColumnKind.NAME:
        value = value.lower()
    return _text(expression, value, wildcard)


def _text(expression: str, value: str, wildcard: Wildcard) -> tuple[str, list[Any]] | None:
    if "\x00" in value:
        return NOTHING, []  # stored columns hold no NUL (such rows are irregular)
    if "*" not in value and "?" not in value:
        return f"{expression} = ?", [value]
    pattern = re.sub(r"\*+", "*", value)
    if pattern.count("*") > MAX_STARS:
        return None
    sql, parameter = wildcard(expression, pattern)
    return sql, [parameter]


def _any_of(conditions: list[tuple[str, list[Any]] | None]) -> tuple[str, list[Any]] | None:
    if any(condition is None for condition in conditions):
        return None
    present = [condition for condition in conditions if condition is not None]
    sql = " OR ".join(f"({condition[0]})" for condition in present)
    return f"({sql})", [param for condition in present for param in condition[1]]


def _uids(expression: str, value: str) -> tuple[str, list[Any]] | None:
    uids = sorted({uid for uid in re.split(r"[,\\]", value) if uid and "\x00" not in uid})
    if len(uids) > MAX_CHOICES:
        return None
    if not uids:
        return NOTHING, []
    return f"{expression} IN ({', '.join('?' for _ in uids)})", list(uids)


def _number(expression: str, value: str) -> tuple[str, list[Any]]:
    try:
        number = float(value)
    except ValueError:
        return NOTHING, []
    return (f"{expression} = ?", [number]) if math.isfinite(number) else (NOTHING, [])


def _range(expression: str, kind: ColumnKind, value: str) -> tuple[str, list[Any]]:
    """As ``matching._in_range`` for DA and TM."""
    vr = "DA" if kind is ColumnKind.DATE else "TM"
    if "-" not in value:
        return f"{expression} = ?", [_normal(vr, value)]
    low, _, high = value.partition("-")
    conditions, params = [f"{expression} IS NOT NULL"], []
    if low:
        conditions.append(f"{expression} >= ?")
        params.append(_normal(vr, low))
    if high:
        conditions.append(f"{expression} <= ?")
        params.append(_normal(vr, high, upper=True))
    return " AND ".join(conditions), params


def sqlite_wildcard(expression: str, pattern: str) -> tuple[str, str]:
    """GLOB: case-sensitive, ``*`` and ``?`` as DICOM's; ``[`` is its only other
    metacharacter."""
    return f"{expression} GLOB ?", pattern.replace("[", "[[]")


def like_wildcard(expression: str, pattern: str) -> tuple[str, str]:
    """LIKE with ``%``, ``_`` and the escape character itself escaped."""
    escaped = re.sub(r"([\\%_])", r"\\\1", pattern)
    return f"{expression} LIKE ? ESCAPE '\\'", escaped.replace("*", "%").replace("?", "_")
