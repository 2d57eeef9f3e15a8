"""Whether an encoded dataset is whole: every element's value is all there.

pydicom reads leniently: a value cut short by the end of the data, or an
element whose length runs past the end, comes back short without an error. A
node must not acknowledge (and store) such an instance, so the SCP checks the
encoding before it accepts an instance.
"""

import zlib
from io import BytesIO

from pydicom.dataelem import RawDataElement
from pydicom.filereader import data_element_generator
from pydicom.uid import UID

from dicomflow.errors import DicomflowError

UNDEFINED_LENGTH = 0xFFFFFFFF


class TruncatedDatasetError(DicomflowError, ValueError):
    """An encoded dataset ends in the middle of a data element."""


def check_complete(data: bytes, transfer_syntax: UID) -> None:
    """Raise if ``data`` (a dataset encoded in ``transfer_syntax``) is cut short.

    Raises:
        TruncatedDatasetError: naming the element whose value is incomplete.
        EOFError, OSError, zlib.error: if pydicom or zlib cannot read ``data`` at all.
    """
    if transfer_syntax.is_deflated:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    stream = BytesIO(data)
    end = 0
    elements = data_element_generator(
        stream, transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian, defer_size=None
    )
    for element in elements:
        if isinstance(element, RawDataElement) and element.length != UNDEFINED_LENGTH:
            found = len(element.value or b"")
            if found != element.length:
                raise TruncatedDatasetError(
                    f"Element {element.tag} declares {element.length} bytes; only {found} follow."
                )
        end = stream.tell()
    if end != len(data):
        raise TruncatedDatasetError(
            f"The last {len(data) - end} byte(s) do not form a whole data element."
        )
