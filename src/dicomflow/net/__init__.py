"""DICOM networking: addresses, the SCP server and the SCU client."""

from dicomflow.net.address import Address

__all__ = ["Address"]
