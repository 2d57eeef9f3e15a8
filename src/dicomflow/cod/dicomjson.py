"""DICOM JSON of a parsed dataset, built straight from its raw elements.

:func:`to_json_dict` returns exactly what pydicom's ``Dataset.to_json_dict``
returns, without pydicom's detour through a ``DataElement`` (value objects,
validation, ambiguous-VR checks) for every element. The common cases are
converted from the raw bytes: little endian public elements with a known VR,
ASCII text, person names, IS/DS numbers, binary numbers, AT, binary data
(inline or bulk data) and sequences (item by item). Anything else is left to
pydicom, element by element: private tags, UN, unknown or ambiguous VRs,
non-ASCII or ISO 2022 text, numbers pydicom reads differently, wrong lengths,
LUT descriptors, deferred values; and the whole dataset when pydicom's reading
is customised (hooks, datetime/decimal/numpy conversion, strict validation).
"""

import base64
import re
import struct
from collections.abc import Callable
from typing import Any

from pydicom import Dataset, config, hooks
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import BaseTag

BulkURI = Callable[[int], str]
"""Return the ``BulkDataURI`` of the element with the given tag."""
Handler = Callable[[DataElement], str] | None
Json = dict[str, Any]

_LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})
_AMBIGUOUS_VRS = frozenset({"OB or OW", "US or OW", "US or SS", "US or SS or OW"})
_BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
_NUMBER_FORMATS = {
    **{"FD": "d", "FL": "f", "SL": "l", "SS": "h"},
    **{"SV": "q", "UL": "L", "US": "H", "UV": "Q"},
}
_INT = re.compile(r" *[+-]?[0-9]{1,15} *\Z")  # exact as a float too: no ISfloat
_FLOAT = re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *\Z")


def to_json_dict(
    ds: Dataset,
    threshold: int,
    bulk_uri: BulkURI | None,
    unparsable: dict[str, str] | None = None,
) -> Json:
    """Return ``ds`` as DICOM JSON, as ``ds.to_json_dict(threshold, handler)`` does.

    Binary values longer than ``(threshold // 4) * 3`` bytes are given as
    ``{"BulkDataURI": bulk_uri(tag)}`` when ``bulk_uri`` is set, else inline.
    A binary value that ``dcmread`` deferred is taken as bulk data without being
    read: read ``ds`` with ``defer_size`` of at least ``threshold`` (or None).

    With ``unparsable`` given, an element whose value cannot be converted (an
    InstanceNumber of "1A", say) does not fail the dataset: it is given as UN
    with its raw bytes inline, and ``unparsable`` maps its path (``"00200013"``,
    or ``"00081115.0.00081150"`` inside a sequence) to why.
    """
    handler = None if bulk_uri is None else _element_handler(bulk_uri)
    if not _default_reading():  # (then an unconvertible value fails the dataset)
        return ds.to_json_dict(threshold, handler)
    return _dataset_json(ds, threshold, bulk_uri, handler, unparsable)


def _element_handler(bulk_uri: BulkURI) -> Callable[[DataElement], str]:
    return lambda element: bulk_uri(int(element.tag))


def _default_reading() -> bool:
    """Whether pydicom converts raw elements the standard way (the fast path's premise)."""
    return (
        hooks.hooks.raw_element_vr is hooks.raw_element_vr
        and hooks.hooks.raw_element_value is hooks.raw_element_value
        and not hooks.hooks.raw_element_kwargs
        and not (config.datetime_conversion or config.use_DS_decimal)
        and not (config.use_DS_numpy or config.use_IS_numpy)
        and config.settings.reading_validation_mode != config.RAISE
    )


def _dataset_json(
    ds: Dataset,
    threshold: int,
    bulk_uri: BulkURI | None,
    handler: Handler,
    unparsable: dict[str, str] | None,
    path: str = "",
) -> Json:
    result: Json = {}
    for tag, element in list(ds.items()):  # raw as read: ds[tag] would convert them
        key = f"{tag:08X}"
        try:
            value = _element_json(ds, tag, element, threshold, bulk_uri, handler, unparsable, path)
        except Exception as exc:  # pydicom raises many kinds on values it cannot convert
            if unparsable is None:
                raise
            unparsable[f"{path}{key}"] = f"{type(exc).__name__}: {exc}"
            value = _unparsable_json(element)
        result[key] = value
    return result


def _element_json(
    ds: Dataset,
    tag: BaseTag,
    element: DataElement | RawDataElement,
    threshold: int,
    bulk_uri: BulkURI | None,
    handler: Handler,
    unparsable: dict[str, str] | None,
    path: str,
) -> Json:
    if isinstance(element, RawDataElement):
        value = _raw_json(element, threshold, bulk_uri)
        if value is not None:
            return value
    converted = ds[tag]
    if converted.VR != "SQ":
        return dict(converted.to_json_dict(handler, threshold))
    prefix = f"{path}{tag:08X}."
    items = [
        _dataset_json(item, threshold, bulk_uri, handler, unparsable, f"{prefix}{index}.")
        for index, item in enumerate(converted.value)
    ]
    return {"vr": "SQ", "Value": items}


def _unparsable_json(element: DataElement | RawDataElement) -> Json:
    """An element whose value cannot be converted: UN, with its bytes as they are."""
    raw = element.value if isinstance(element, RawDataElement) else None
    if isinstance(raw, bytes) and raw:
        return {"vr": "UN", "InlineBinary": base64.b64encode(raw).decode("ascii")}
    return {"vr": "UN"}


def _raw_json(raw: RawDataElement, threshold: int, bulk_uri: BulkURI | None) -> Json | None:
    """The element's JSON from its raw bytes, or None to leave it to pydicom."""
    tag, data = raw.tag, raw.value
    if not raw.is_little_endian or tag >> 16 & 1 or tag in _LUT_DESCRIPTORS:
        return None
    vr = raw.VR or _dictionary_vr(tag)
    if data is None:  # deferred: read with defer_size >= threshold, so bulk data
        if vr in _BYTES_VRS and bulk_uri is not None and raw.length > (threshold // 4) * 3:
            return {"vr": vr, "BulkDataURI": bulk_uri(tag)}
        return None
    if vr in _BYTES_VRS:
        return _bytes_json(vr, tag, data, threshold, bulk_uri)
    if vr in _NUMBER_FORMATS:
        return _numbers_json(vr, data)
    if vr == "AT":
        return _tags_json(data)
    if not data.isascii() or b"\x1b" in data:
        return None
    convert = _TEXT.get(vr or "")
    return None if vr is None or convert is None else convert(vr, data.decode("ascii"))


def _dictionary_vr(tag: BaseTag) -> str | None:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return None if vr in _AMBIGUOUS_VRS else vr


def _bytes_json(vr: str, tag: int, data: bytes, threshold: int, bulk_uri: BulkURI | None) -> Json:
    if not data:
        return {"vr": vr}
    if bulk_uri is not None and len(data) > (threshold // 4) * 3:
        return {"vr": vr, "BulkDataURI": bulk_uri(tag)}
    return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("utf-8")}


def _numbers_json(vr: str, data: bytes) -> Json | None:
    code = _NUMBER_FORMATS[vr]
    count, remainder = divmod(len(data), struct.calcsize("<" + code))
    if remainder:
        return None
    if not count:
        return {"vr": vr}
    return {"vr": vr, "Value": list(struct.unpack(f"<{count}{code}", data))}


def _tags_json(data: bytes) -> Json | None:
    if len(data) % 4:
        return None
    if not data:
        return {"vr": "AT"}
    words = struct.unpack(f"<{len(data) // 2}H", data)
    tags = [
        f"{group:04X}{element:04X}" for group, element in zip(words[::2], words[1::2], strict=True)
    ]
    return {"vr": "AT", "Value": tags}


def _values_json(vr: str, values: list[Any]) -> Json:
    """JSON of a split value: one empty value is no value; several are kept as they are."""
    if len(values) == 1 and values[0] == "":
        return {"vr": vr}
    return {"vr": vr, "Value": values}


def _trimmed(vr: str, text: str) -> Json:
    """AS, CS, DA, DT, TM, UI: trailing spaces and nulls dropped, then split."""
    return _values_json(vr, text.rstrip(" \x00").split("\\"))


def _application_entity(vr: str, text: str) -> Json:
    return _values_json(vr, [value.strip() for value in text.split("\\")])


def _text(vr: str, text: str) -> Json:
    """LO, SH, UC: split, then each value's trailing spaces and nulls dropped."""
    return _values_json(vr, [value.rstrip("\x00 ") for value in text.split("\\")])


def _single_text(vr: str, text: str) -> Json:
    """LT, ST, UT: one value, backslashes included."""
    return _values_json(vr, [text.rstrip("\x00 ")])


def _person_name(vr: str, text: str) -> Json | None:
    values = text.rstrip("\x00 ").split("\\")
    if len(values) == 1 and values[0] == "":
        return {"vr": vr}
    if "" in values:  # an empty name among several: pydicom's to_json_dict fails
        return None
    groups = ("Alphabetic", "Ideographic", "Phonetic")
    names = [dict(zip(groups, value.split("="), strict=False)) for value in values]
    return {"vr": vr, "Value": names}


def _integer_string(vr: str, text: str) -> Json | None:
    values = text.rstrip(" \x00").split("\\")
    if len(values) == 1 and values[0] == "":
        return {"vr": vr}
    if not all(_INT.match(value) for value in values):
        return None
    return {"vr": vr, "Value": [int(value) for value in values]}


def _decimal_string(vr: str, text: str) -> Json | None:
    values = text.strip().rstrip(" \x00").split("\\")
    if len(values) == 1 and values[0] == "":
        return {"vr": vr}
    if not all(_FLOAT.match(value) for value in values):
        return None
    return {"vr": vr, "Value": [float(value) for value in values]}


_TEXT: dict[str, Callable[[str, str], Json | None]] = {
    **dict.fromkeys(("AS", "CS", "DA", "DT", "TM", "UI"), _trimmed),
    "AE": _application_entity,
    **dict.fromkeys(("LO", "SH", "UC"), _text),
    **dict.fromkeys(("LT", "ST", "UT"), _single_text),
    "PN": _person_name,
    "IS": _integer_string,
    "DS": _decimal_string,
}
