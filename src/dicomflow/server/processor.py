"""Alias of :mod:`dicomflow.node.processor` for seed-style imports."""

from dicomflow.node.processor import AbstractProcessor

Processor = AbstractProcessor

__all__ = ["AbstractProcessor", "Processor"]
