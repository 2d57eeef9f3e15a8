"""The one place a node is assembled and started: :func:`run`, used by the command line
and by ``AbstractPipeline.open()``."""

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

from pydicom import Dataset

from dicomflow.engine.node import Node
from dicomflow.engine.protocols import PipelineClass
from dicomflow.engine.screen import Screen
from dicomflow.engine.series_jobs import SeriesConsumer
from dicomflow.net import storage as status
from dicomflow.settings import NodeSettings


def run(
    pipeline_class: PipelineClass | None,
    settings: NodeSettings,
    *,
    consumer: SeriesConsumer | None = None,
    admit: Callable[[Dataset], bool] | None = None,
    discarded_status: int = status.SUCCESS,
    blocking: bool = False,
    on_start: Callable[[Node], None] | None = None,
    on_stop: Callable[[Node], None] | None = None,
) -> Node:
    """Assemble the node of ``pipeline_class`` (None: registry services only) and start it.

    ``consumer`` adds registry services and/or the archive (a series consumer);
    ``admit(dataset)`` (a pipeline's ``filter()``) is asked before an instance is kept,
    one it does not admit answered with ``discarded_status``. Not ``blocking``, return
    the running node; ``blocking``, call ``on_start(node)`` once it runs, serve until
    SIGINT or SIGTERM, then stop it (by ``on_stop(node)`` if given, which must stop it)
    and return it.

    Raises:
        DataDirectoryInUseError: another node runs on this data directory.
    """
    screen = Screen(admit, discarded_status) if admit is not None else None
    if not blocking:
        return _started(pipeline_class, settings, consumer, screen)
    with stop_signals() as stop:  # before the port opens: a signal then stops cleanly
        node = _started(pipeline_class, settings, consumer, screen)
        if on_start is not None:
            on_start(node)
        while not stop.wait(0.5):
            pass
    if on_stop is not None:
        on_stop(node)
    else:
        node.stop()
    return node


def _started(
    pipeline_class: PipelineClass | None,
    settings: NodeSettings,
    consumer: SeriesConsumer | None,
    screen: Screen | None,
) -> Node:
    node = Node(pipeline_class, settings, consumer, screen=screen)
    node.start()
    return node


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    with stop_signals() as stop:
        while not stop.wait(0.5):
            pass


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event SIGINT or SIGTERM sets while inside (the previous handlers come back)."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
