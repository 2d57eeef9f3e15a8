"""The pipeline library's constants (``dicomnode.constants``) under dicomflow.

The logger names are dicomflow's: records logged to ``DICOMNODE_LOGGER_NAME`` go to
the node's configured log (stderr and/or ``log_path``). The implementation UID, name
and version are dicomflow's own: a migrated node does not claim to be the original.
The environment variable *names* are kept, for code that reads them itself; dicomflow
does not read them.
"""

from importlib.metadata import PackageNotFoundError, version

import numpy
from pydicom.uid import UID

from dicomflow.net.pdu import IMPLEMENTATION_CLASS_UID
from dicomflow.node.pipeline import PIPELINE_LOGGER
from dicomflow.node.processor import PROCESS_LOGGER

DICOMNODE_LOGGER_NAME = PIPELINE_LOGGER
DICOMNODE_PROCESS_LOGGER = PROCESS_LOGGER

DEFAULT_PROCESSING_DIRECTORY = "/tmp/dicomnode"
DEFAULT_FIGURE_DIRECTORY = "/tmp/dicomnode/figures"
DEFAULT_REPORTS_DIRECTORY = "/tmp/dicomnode/reports"
DEFAULT_REPORT_DATA_DIRECTORY = "/tmp/dicomnode/report_data"

DICOMNODE_ENV_LOG_PATH = "DICOMNODE_ENV_LOG_PATH"
DICOMNODE_ENV_REPORT_DATA_PATH = "DICOMNODE_ENV_REPORT_DATA_PATH"
DICOMNODE_ENV_FONT = "DICOMNODE_ENV_FONT"
DICOMNODE_ENV_FIGURE_PATH = "DICOMNODE_ENV_FIGURE_PATH"
DICOMNODE_ENV_PROCESSING_PATH = "DICOMNODE_ENV_PROCESSING_PATH"
DICOMNODE_ENV_REPORT_PATH = "DICOMNODE_ENV_REPORT_PATH"

DICOMNODE_PRIVATE_TAG_VERSION = 1
DICOMNODE_PRIVATE_TAG_HEADER = f"Dicomnode - Private tags version: {DICOMNODE_PRIVATE_TAG_VERSION}"

DICOMNODE_IMPLEMENTATION_UID = UID(IMPLEMENTATION_CLASS_UID)
DICOMNODE_IMPLEMENTATION_NAME = "DICOMFLOW"  # fits a SH (16 characters)
try:
    DICOMNODE_VERSION = version("dicomflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    DICOMNODE_VERSION = "0"

UNSIGNED_ARRAY_ENCODING: dict[int, type] = {
    8: numpy.uint8,
    16: numpy.uint16,
    32: numpy.uint32,
    64: numpy.uint64,
}
SIGNED_ARRAY_ENCODING: dict[int, type] = {
    8: numpy.int8,
    16: numpy.int16,
    32: numpy.int32,
    64: numpy.int64,
}
