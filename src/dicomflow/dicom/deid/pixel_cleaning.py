"""Pixel cleaning for instances with burned-in annotation, with ``deid``'s ``%filter`` rules.

A rule source (setting ``deid_pixel_cleaning``) is either ``"deid"``, the rules that ship
with the deid library (its ``deid/data/deid.dicom``; in deid 0.4.13, 118 ``LABEL`` rules
from CTP and Stanford: 2 whitelist, 109 graylist and 7 blacklist rules, matched on
Modality, Manufacturer, ManufacturerModelName, Rows, Columns, ImageType, ...). Its
graylist has rectangles for CT dose reports, localizers and screen captures (GE
LightSpeed, Siemens SOMATOM, Toshiba Aquilion, Vitrea), PET (Philips), NM (Siemens),
mammography (SENO), CR/DR (Canon) and ultrasound (GE LOGIQ, Philips iU22/EPIQ/Affiniti/
CX50, Siemens Acuson/Antares/SC2000, Toshiba Aplio, Samsung Medison, Mindray, Esaote,
Hitachi, SuperSonic Imagine, Ultrasonix, Chison, SIUI, Kretztechnik, ATL HDI); its
blacklist only flags (no regions). Or the path of a deid recipe file with ``%filter``
sections of one's own.

deid's detector (:func:`deid.dicom.pixels.has_burned_pixels`) runs the instance's header
down the rules. Only a matching rule of the ``graylist`` or ``blacklist`` that names
regions (``coordinates``, ``ctpcoordinates``, ``keepcoordinates``) says what to blank:
every such rule of the first source that has one is applied together
(:func:`deid.dicom.pixels.clean_pixel_data` blanks the union of their rectangles). A
rule that only flags (no coordinates) and the whitelist neither clean nor clear an
instance: without a region to blank, it is refused.

Everything happens in memory, on the dataset: compressed pixel data is decoded and
stored uncompressed (Explicit VR Little Endian, colour as RGB), and BurnedInAnnotation
becomes NO once cleaned.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

from pydicom import Dataset, FileDataset

from dicomflow.errors import DeidConfigError, DeidError, DeidRefusedError

__all__ = ["SHIPPED_RULES", "check_rules", "clean_pixels"]

SHIPPED_RULES = "deid"  # the rules of deid's own deid/data/deid.dicom
SETTING = "deid_pixel_cleaning"
_CLEANING_GROUPS = ("graylist", "blacklist")
_SILENT = -6  # below deid's ABORT level: its messages off (it prints to stdout)
_PHOTOMETRIC = {"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422"}


def clean_pixels(dataset: Dataset, rules: tuple[str, ...], reason: str) -> None:
    """Blank the regions the matching rules name, in place (see the module's text).

    ``rules``: deid recipe files with ``%filter`` sections, or ``"deid"`` for the rules
    that ship with the deid library; the first source with a matching rule is used.

    Raises:
        DeidRefusedError: no rule with regions matches; the message names the instance's
            Manufacturer, ManufacturerModelName and SOP class (for the rule to write).
        DeidError: the pixel data cannot be decoded or stored again.
        DeidConfigError: a rule source cannot be read.
    """
    for source in rules:
        matches = _matching_regions(dataset, source)
        if matches:
            _blank(dataset, matches)
            dataset.BurnedInAnnotation = "NO"
            return
    raise DeidRefusedError(
        f"{reason}: no pixel-cleaning rule of {SETTING} ({', '.join(rules)}) names regions"
        f" to blank for {_device(dataset)}; add a %filter graylist rule with coordinates"
    )


def check_rules(rules: tuple[str, ...] | list[str]) -> None:
    """Load every rule source once; raises DeidConfigError naming the setting and the
    source that cannot be used."""
    for source in rules:
        _recipe(source)


def _matching_regions(dataset: Dataset, source: str) -> list[dict[str, Any]]:
    """deid's results for the rules of ``source`` that match and name regions."""
    from deid.dicom.pixels import has_burned_pixels

    recipe = copy.deepcopy(_recipe(source))  # deid rewrites "from:" coordinates in place
    try:
        found = has_burned_pixels(_file_dataset(dataset), force=True, deid=recipe)
    except Exception as error:  # deid's filters raise many types on odd values
        raise DeidError(f"pixel-cleaning rules of {source!r} failed: {_error(error)}") from None
    return [
        result
        for result in found.get("results", [])
        if result.get("group") in _CLEANING_GROUPS
        and any(coordinate[1] for coordinate in result.get("coordinates") or [])
    ]


def _blank(dataset: Dataset, matches: list[dict[str, Any]]) -> None:
    """Blank the regions of ``matches`` and store the pixels uncompressed."""
    from deid.dicom.pixels import clean_pixel_data
    from deid.logger import bot

    bot.level = _SILENT  # importing deid's cleaner sets its level again
    photometric = _photometric_after_decoding(dataset)
    try:
        cleaned = clean_pixel_data(
            _file_dataset(dataset), {"results": matches}, fix_interpretation=False
        )
        if cleaned is None:
            raise ValueError("the pixel array's dimensions are not those of an image")
        bits_stored = int(dataset.get("BitsStored") or cleaned.dtype.itemsize * 8)
        dataset.set_pixel_data(
            cleaned.astype(_stored_type(dataset), copy=False),
            photometric,
            bits_stored,
            generate_instance_uid=False,  # pseudonyms derive from the original UID
        )
    except Exception as error:  # pydicom's decoders raise many types
        raise DeidError(f"the pixel data could not be cleaned: {_error(error)}") from None


def _stored_type(dataset: Dataset) -> str:
    """The numpy type of the stored pixels (deid's mask may have widened it)."""
    bits = int(dataset.get("BitsAllocated", 8) or 8)
    signed = int(dataset.get("PixelRepresentation", 0) or 0) == 1
    return f"{'i' if signed else 'u'}{max(bits // 8, 1)}"


def _photometric_after_decoding(dataset: Dataset) -> str:
    """The PhotometricInterpretation of the decoded pixels (pydicom turns YBR into RGB)."""
    value = str(dataset.get("PhotometricInterpretation", "") or "").strip()
    if value.startswith("YBR") and int(dataset.get("SamplesPerPixel", 1) or 1) == 3:
        return "RGB"
    if value not in _PHOTOMETRIC:
        raise DeidError(
            f"pixel data with PhotometricInterpretation {value[:20]!r} cannot be cleaned"
        )
    return value


def _file_dataset(dataset: Dataset) -> FileDataset:
    """``dataset`` as deid takes it (a FileDataset; a plain Dataset is wrapped, sharing
    its elements)."""
    if isinstance(dataset, FileDataset):
        return dataset
    meta = getattr(dataset, "file_meta", None)
    return FileDataset("", dataset, file_meta=meta, preamble=b"\0" * 128)


@cache
def _recipe(source: str) -> Any:
    """The deid recipe of a rule source, read once per process."""
    from deid.config import DeidRecipe
    from deid.logger import bot

    bot.level = _SILENT
    if source != SHIPPED_RULES and not Path(source).is_file():
        raise DeidConfigError(f"{SETTING}: {source[:200]!r} is not a file (or 'deid')")
    try:
        recipe = DeidRecipe() if source == SHIPPED_RULES else DeidRecipe(source, base=False)
        filters = recipe.get_filters()
    except (Exception, SystemExit) as error:  # deid exits on a recipe it cannot parse
        raise DeidConfigError(f"{SETTING}: {source[:200]!r} cannot be read: {error}") from None
    if not filters:
        raise DeidConfigError(f"{SETTING}: {source[:200]!r} has no %filter rules")
    return recipe


def _device(dataset: Dataset) -> str:
    def shown(keyword: str) -> str:
        return repr(str(dataset.get(keyword, "") or "")[:64])

    sop_class = str(dataset.get("SOPClassUID", "") or "")[:64]
    return (
        f"Manufacturer {shown('Manufacturer')}, ManufacturerModelName"
        f" {shown('ManufacturerModelName')}, Modality {shown('Modality')},"
        f" SOP class {sop_class}"
    )


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:200]}"
