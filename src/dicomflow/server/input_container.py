"""Alias of :mod:`dicomflow.node.container` for the pipeline library's import path."""

from dicomflow.node.container import InputContainer

__all__ = ["InputContainer"]
