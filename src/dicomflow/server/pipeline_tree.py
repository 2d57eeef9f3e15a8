"""The pipeline library's older ``server.pipeline_tree`` path of ``InputContainer``.

Received instances live in dicomflow's durable spool, not in a pipeline tree; only
the container that ``process()`` receives has a name here.
"""

from dicomflow.node.container import InputContainer

__all__ = ["InputContainer"]
