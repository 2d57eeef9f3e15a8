"""Imported once in the forkserver: load the node's main script there.

Each worker forked from the forkserver runs multiprocessing's "main module
fix-up": unless the main script is already loaded, the child re-executes it
(for ``dicomflow serve`` that re-imports the CLI, ~90 ms per round).
CPython's forkserver can preload the main script itself, but in 3.11 it is
never given the script's path, so it does not. This module does it, with the
path the node puts in ``DICOMFLOW_MAIN_PATH`` before the forkserver starts;
the script runs as ``__mp_main__``, so its ``if __name__ == "__main__"`` block
does not. Only the forkserver imports this module (it is in its preload list).
"""

import os
import sys
from multiprocessing import process, spawn

from dicomflow.node.runner import MAIN_PATH_VARIABLE


def load_main() -> None:
    """Load the main script named by ``DICOMFLOW_MAIN_PATH``, once."""
    path = os.environ.pop(MAIN_PATH_VARIABLE, None)
    current = sys.modules.get("__main__")
    if not path or getattr(current, "__file__", None) == path:
        return
    process.current_process()._inheriting = True  # type: ignore[attr-defined]
    try:
        spawn.import_main_path(path)
    finally:
        del process.current_process()._inheriting  # type: ignore[attr-defined]


load_main()
