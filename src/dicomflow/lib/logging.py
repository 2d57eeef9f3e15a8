"""The pipeline library's ``lib.logging`` names that pipelines call.

Handlers are configured once, by the node (``log_output``/``log_path``,
``log_level``); these give the pipeline's logger and log a traceback on it.
"""

import logging

from dicomflow.node.pipeline import PIPELINE_LOGGER


def get_logger() -> logging.Logger:
    """The logger of ``pipeline.logger``."""
    return logging.getLogger(PIPELINE_LOGGER)


def log_traceback(
    logger: logging.Logger, exception: BaseException, header_message: str | None = None
) -> None:
    """Log ``exception`` with its traceback at CRITICAL, after ``header_message``."""
    if header_message is not None:
        logger.critical(header_message)
    logger.critical(
        "Encountered exception: %s",
        type(exception).__name__,
        exc_info=(type(exception), exception, exception.__traceback__),
    )


__all__ = ["get_logger", "log_traceback"]
