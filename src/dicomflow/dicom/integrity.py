"""Whether an encoded dataset is whole: every element's value is all there.

pydicom reads leniently: a value cut short by the end of the data, or an
element whose length runs past the end, comes back short without an error. A
node must not acknowledge (and store) such an instance, so the SCP checks the
encoding before it accepts an instance.
"""

import zlib
from io import BytesIO

from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.tag import BaseTag
from pydicom.uid import UID

from dicomflow.errors import DicomflowError

UNDEFINED_LENGTH = 0xFFFFFFFF


class TruncatedDatasetError(DicomflowError, ValueError):
    """An encoded dataset ends in the middle of a data element."""


def decode_complete(data: bytes, transfer_syntax: UID) -> Dataset:
    """Decode ``data`` into a dataset in one pass, checking that every element is whole.

    The elements stay raw (decoded by pydicom on first access), as when pydicom
    reads a file.

    Raises:
        TruncatedDatasetError: naming the element whose value is incomplete.
        EOFError, OSError, zlib.error: if pydicom or zlib cannot read ``data`` at all.
    """
    if transfer_syntax.is_deflated:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    implicit, little = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
    stream = BytesIO(data)
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    end = 0
    for element in data_element_generator(stream, implicit, little, defer_size=None):
        if isinstance(element, RawDataElement):
            _check_length(element)
        elements[element.tag] = element
        end = stream.tell()
    if end != len(data):
        raise TruncatedDatasetError(
            f"The last {len(data) - end} byte(s) do not form a whole data element."
        )
    dataset = Dataset(elements)
    dataset.set_original_encoding(implicit, little, dataset._character_set)
    return dataset


def decode_part10(data: bytes) -> Dataset:
    """Decode a Part-10 file held in memory (preamble, ``DICM``, file meta, dataset),
    checking that the dataset is whole as :func:`decode_complete` does.

    Raises:
        InvalidDicomError: if ``data`` does not start like a Part-10 file.
        TruncatedDatasetError, EOFError, OSError, ValueError: if the rest cannot be read.
    """
    stream = BytesIO(data)
    read_preamble(stream, False)
    meta = _read_file_meta_info(stream)
    syntax = meta.get("TransferSyntaxUID")
    if syntax is None:
        raise TruncatedDatasetError("The file meta information has no TransferSyntaxUID.")
    dataset = decode_complete(data[stream.tell() :], UID(syntax))
    dataset.file_meta = meta
    return dataset


def _check_length(element: RawDataElement) -> None:
    if element.length == UNDEFINED_LENGTH:
        return
    found = len(element.value or b"")
    if found != element.length:
        raise TruncatedDatasetError(
            f"Element {element.tag} declares {element.length} bytes; only {found} follow."
        )
