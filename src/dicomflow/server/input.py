"""Alias of :mod:`dicomflow.node.input` for seed-style imports."""

from dicomflow.node.input import AbstractInput

__all__ = ["AbstractInput"]
