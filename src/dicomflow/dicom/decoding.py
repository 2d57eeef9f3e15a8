"""Decoding pixel data without pydicom's tracebacks.

pydicom logs a traceback for every decoder plugin that fails on a frame, then raises
one error listing them all, over several lines. Code that reports the failure itself
decodes inside :func:`decoder_failures_unlogged` and reports :func:`one_line` of it.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

DECODERS_LOGGER = "pydicom.pixels.decoders.base"


class _NoTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


@contextmanager
def decoder_failures_unlogged() -> Iterator[None]:
    """While inside, pydicom's decoders log no traceback (their other records pass)."""
    decoders = logging.getLogger(DECODERS_LOGGER)
    dropped = _NoTracebacks()
    decoders.addFilter(dropped)
    try:
        yield
    finally:
        decoders.removeFilter(dropped)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, without a closing full stop."""
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
