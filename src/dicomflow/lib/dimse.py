"""Alias for seed-style imports of :mod:`dicomflow.dicom.dimse`."""

from dicomflow.dicom.dimse import Address, send_image, send_images, send_images_thread

__all__ = ["Address", "send_image", "send_images", "send_images_thread"]
