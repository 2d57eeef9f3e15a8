"""Alias of :mod:`dicomflow.node.input` for seed-style imports.

``HistoricAbstractInput`` (an input that fetches a patient's earlier studies by
C-FIND/C-MOVE) is not provided yet: importing it raises an ``ImportError``
saying so, rather than a pipeline failing later.
"""

from typing import Any

from dicomflow.errors import MissingModule
from dicomflow.node.dynamic_input import DynamicInput, DynamicLeaf
from dicomflow.node.input import AbstractInput, AbstractInputProxy, InputOptions

__all__ = ["AbstractInput", "AbstractInputProxy", "DynamicInput", "DynamicLeaf", "InputOptions"]

_NOT_YET = {
    "HistoricAbstractInput": (
        "HistoricAbstractInput is not available in dicomflow yet: it fetches earlier studies"
        " with C-FIND and C-MOVE from a PACS during collection, which dicomflow's inputs do"
        " not do. Send the earlier studies to the node (e.g. with a C-MOVE to its AE title)"
        " and accept them with an AbstractInput whose required_values select them."
    ),
}


def __getattr__(name: str) -> Any:
    if name in _NOT_YET:
        raise MissingModule(_NOT_YET[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
