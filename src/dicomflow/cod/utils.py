"""``cloud_optimized_dicom.utils``: the helpers its users imported, from their homes."""

from dicomflow.cod.checksum import file_checksum as generate_ptr_crc32c
from dicomflow.cod.instance import is_remote
from dicomflow.cod.layout import delete_folders as delete_uploaded_blobs

__all__ = ["delete_uploaded_blobs", "generate_ptr_crc32c", "is_remote"]
