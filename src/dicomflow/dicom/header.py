"""Dataset headers: a dataset without its bulk pixel data, cheap to keep in memory."""

from pydicom import Dataset

PIXEL_GROUP_START = 0x7FE00000


def header_of(dataset: Dataset) -> Dataset:
    """Return a dataset with every element of ``dataset`` before the pixel data group.

    Elements are shared, not copied or decoded, so this is cheap even for
    datasets received over the network and not yet parsed.
    """
    elements = {tag: element for tag, element in dataset._dict.items() if tag < PIXEL_GROUP_START}
    header = Dataset(elements)
    header.set_original_encoding(*_encoding(dataset))
    return header


def _encoding(dataset: Dataset) -> tuple[bool | None, bool | None, str | list[str]]:
    implicit, little = dataset.original_encoding
    charset = dataset.original_character_set
    return implicit, little, charset if isinstance(charset, str) else list(charset)
