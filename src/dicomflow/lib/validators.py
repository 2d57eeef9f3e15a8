"""Alias of :mod:`dicomflow.node.validators` for seed-style imports."""

from dicomflow.node.validators import (
    CaselessRegexValidator,
    EqualityValidator,
    NegatedValidator,
    OptionsValidator,
    RegexValidator,
    Validator,
    get_validator_for_value,
)

__all__ = [
    "CaselessRegexValidator",
    "EqualityValidator",
    "NegatedValidator",
    "OptionsValidator",
    "RegexValidator",
    "Validator",
    "get_validator_for_value",
]
