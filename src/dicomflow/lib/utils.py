"""Alias for the seed-style import ``lib.utils.is_picklable``."""

from dicomflow.node.processor import is_picklable

__all__ = ["is_picklable"]
