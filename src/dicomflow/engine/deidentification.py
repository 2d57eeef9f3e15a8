"""The node's de-identifier, built from its settings (``deid_*``, ``archive_deid``).

One :class:`~dicomflow.dicom.deid.Deidentifier` per process and settings: the recipe is
built once, the key read once. :func:`check_deid_settings` runs at start so that a wrong
option name, a key file others can read or a bad safe-private entry stops the node with
a message naming the setting, before any instance is accepted.
"""

from __future__ import annotations

import threading

from dicomflow.dicom.deid import (
    Deidentifier,
    DeidProfile,
    Pseudonymizer,
    ReidentificationTable,
    load_key_file,
)
from dicomflow.dicom.deid.pixel_cleaning import check_rules
from dicomflow.settings import NodeSettings

__all__ = [
    "check_deid_settings",
    "deid_in_use",
    "deid_profile",
    "deidentifier_from_settings",
]

_LOCK = threading.Lock()
_BUILT: dict[tuple[object, ...], Deidentifier] = {}


def deid_profile(settings: NodeSettings) -> DeidProfile:
    """The profile the settings select; raises DeidConfigError naming the setting."""
    return DeidProfile.from_names(
        settings.deid_profile,
        settings.deid_options,
        settings.deid_safe_private,
        settings.deid_pixel_cleaning,
    )


def deidentifier_from_settings(settings: NodeSettings) -> Deidentifier:
    """The process's de-identifier for ``settings`` (made, and the key read, once)."""
    key = (
        settings.deid_profile,
        tuple(settings.deid_options),
        tuple(settings.deid_safe_private),
        tuple(settings.deid_pixel_cleaning),
        settings.deid_key_path(),
        settings.deid_reidentification_table,
    )
    with _LOCK:
        built = _BUILT.get(key)
        if built is None:
            built = _build(settings)
            _BUILT[key] = built
        return built


def deid_in_use(settings: NodeSettings) -> bool:
    """Whether the settings ask for de-identification anywhere (the archive, or any
    de-identification setting given), so that the node checks them when it starts."""
    return (
        settings.archive_deid
        or settings.deid_profile != "basic"
        or bool(settings.deid_options or settings.deid_safe_private)
        or bool(settings.deid_pixel_cleaning)
        or settings.deid_key_file is not None
        or settings.deid_reidentification_table is not None
    )


def check_deid_settings(settings: NodeSettings) -> None:
    """Fail early on wrong de-identification settings (only when something uses them),
    pixel-cleaning rule files included."""
    deidentifier_from_settings(settings)
    check_rules(settings.deid_pixel_cleaning)


def _build(settings: NodeSettings) -> Deidentifier:
    profile = deid_profile(settings)
    key = load_key_file(settings.deid_key_path(), create=settings.deid_key_file is None)
    table_path = settings.deid_reidentification_table
    table = ReidentificationTable(table_path) if table_path is not None else None
    return Deidentifier(profile, Pseudonymizer(key), table)
