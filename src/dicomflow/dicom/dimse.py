"""The import path ``dicomnode.dicom.dimse`` of the pipeline library: names only.

``send_images`` is dicomflow's SCU (:mod:`dicomflow.net.images`); ``Address``
is :class:`dicomflow.net.address.Address`.
"""

from dicomflow.net.address import Address
from dicomflow.net.images import send_image, send_images, send_images_thread

__all__ = ["Address", "send_image", "send_images", "send_images_thread"]
