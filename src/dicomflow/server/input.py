"""Alias of :mod:`dicomflow.node.input` (and :mod:`dicomflow.node.historic`) for
seed-style imports."""

from dicomflow.node.dynamic_input import DynamicInput, DynamicLeaf
from dicomflow.node.historic import HistoricAbstractInput
from dicomflow.node.input import AbstractInput, AbstractInputProxy, InputOptions

__all__ = [
    "AbstractInput",
    "AbstractInputProxy",
    "DynamicInput",
    "DynamicLeaf",
    "HistoricAbstractInput",
    "InputOptions",
]
