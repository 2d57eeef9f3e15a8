"""Alias of the pattern helpers of :mod:`dicomflow.node.validators` for seed-style imports."""

from dicomflow.node.validators import escape_pattern, from_wildcard

__all__ = ["escape_pattern", "from_wildcard"]
