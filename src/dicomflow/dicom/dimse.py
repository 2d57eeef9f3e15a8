"""The import path ``dicomnode.dicom.dimse`` of the pipeline library: names only.

``send_images`` is dicomflow's SCU (:mod:`dicomflow.net.images`); ``Address``
is :class:`dicomflow.address.Address`; C-MOVE and the query helpers are in
:mod:`dicomflow.net.retrieve`.
"""

from dicomflow.address import Address
from dicomflow.errors import CouldNotCompleteDIMSEMessage, InvalidQueryDataset
from dicomflow.net.images import send_image, send_images, send_images_thread
from dicomflow.net.retrieve import (
    DIMSE_StatusCodes,
    QueryLevels,
    create_query_dataset,
    send_move,
    send_move_thread,
    validate_query_dataset,
)

__all__ = [
    "Address",
    "CouldNotCompleteDIMSEMessage",
    "DIMSE_StatusCodes",
    "InvalidQueryDataset",
    "QueryLevels",
    "create_query_dataset",
    "send_image",
    "send_images",
    "send_images_thread",
    "send_move",
    "send_move_thread",
    "validate_query_dataset",
]
