"""DICOM networking: addresses, the one codec (:mod:`~dicomflow.net.pdu`), the
acceptor (the receiver), the requestor (the sender) and the storage service both
receivers share (:mod:`~dicomflow.net.storage`)."""

from dicomflow.address import Address

__all__ = ["Address"]
