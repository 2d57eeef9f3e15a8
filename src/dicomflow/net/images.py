"""Send datasets to a peer at once, from pipeline code: ``send_images(ae_title, address,
datasets)``.

A thin call of the SCU (:func:`dicomflow.net.requestor.send`) that raises instead of
reporting: for results of a round, prefer returning a ``DicomOutput``, which the
node sends through its outbox, with retries.
"""

import logging
import re
import threading
from collections.abc import Callable, Iterable

from pydicom import Dataset
from pydicom.dataelem import DataElement

from dicomflow.address import Address
from dicomflow.errors import CouldNotCompleteDIMSEMessage, PeerUnreachableError
from dicomflow.net.requestor import send

logger = logging.getLogger(__name__)

ErrorCallback = Callable[[Address, Dataset, Dataset], None]


def send_images(
    SCU_AE: str,
    address: Address,
    dicom_images: Iterable[Dataset],
    error_callback_func: ErrorCallback | None = None,
    logger: logging.Logger | None = None,
) -> int:
    """C-STORE ``dicom_images`` to ``address`` as ``SCU_AE`` over one association; return
    0x0000 once the peer has acknowledged each.

    Without ``error_callback_func`` an instance the peer did not take raises; with it,
    ``error_callback_func(address, response, dataset)`` is called for each such instance
    (``response`` holds the reason in ErrorComment, and the peer's Status if it gave
    one) and the rest are sent.

    Raises:
        TypeError: if ``dicom_images`` yields something other than datasets.
        CouldNotCompleteDIMSEMessage: if the peer cannot be associated with, or (without
            ``error_callback_func``) did not take an instance.
    """
    log = logger or logging.getLogger(__name__)
    datasets = _datasets(dicom_images)
    try:
        report = send(address, datasets, calling_ae_title=SCU_AE)
    except PeerUnreachableError as exc:
        log.error("Could not associate with %s as %s: %s", address, SCU_AE, exc)
        raise CouldNotCompleteDIMSEMessage(f"Could not connect to {address}: {exc}") from exc
    failed = [ds for ds in datasets if str(ds.SOPInstanceUID) in report.failed]
    for dataset in failed:
        reason = report.failed[str(dataset.SOPInstanceUID)]
        if error_callback_func is None:
            log.error("%s did not store %s: %s", address, dataset.SOPInstanceUID, reason)
            raise CouldNotCompleteDIMSEMessage(
                f"{address} did not store {len(failed)} of {len(datasets)} instance(s);"
                f" {dataset.SOPInstanceUID}: {reason}"
            )
        error_callback_func(address, _response(reason), dataset)
    log.info("Sent %d instance(s) to %s", len(report.sent), address)
    return 0x0000


def send_image(SCU_AE: str, address: Address, dicom_image: Dataset) -> int:
    """C-STORE one dataset (see :func:`send_images`)."""
    return send_images(SCU_AE, address, [dicom_image])


def send_images_thread(
    SCU_AE: str,
    address: Address,
    dicom_images: Iterable[Dataset],
    error_callback_func: ErrorCallback | None = None,
    daemon: bool = True,
) -> threading.Thread:
    """Run :func:`send_images` in a thread of its own, started; return the thread."""
    thread = threading.Thread(
        target=send_images,
        args=(SCU_AE, address, dicom_images, error_callback_func),
        daemon=daemon,
        name=f"dicomflow-send {address}",
    )
    thread.start()
    return thread


def _response(reason: str) -> Dataset:
    """A response for an error callback: the reason, and the status if the peer gave one."""
    response = Dataset()
    response.ErrorComment = reason[:64]
    status = re.fullmatch(r"status 0x([0-9A-F]{4})", reason)
    if status is not None:
        response.Status = int(status.group(1), 16)
    return response


def _datasets(dicom_images: Iterable[Dataset]) -> list[Dataset]:
    if isinstance(dicom_images, Dataset | DataElement):
        raise TypeError(
            "send_images() takes an iterable of datasets: wrap a single one in a list,"
            " or use send_image()."
        )
    datasets = list(dicom_images)
    for dataset in datasets:
        if not isinstance(dataset, Dataset):
            raise TypeError(
                f"send_images() was given a {type(dataset).__name__} among the datasets."
            )
    return datasets
