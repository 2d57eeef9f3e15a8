"""Pixel cleaning for instances with burned-in annotation, with ``deid``'s ``%filter`` rules.

(Contract; implemented with the pixel-cleaning work.)
"""

from __future__ import annotations

from pydicom import Dataset

from dicomflow.errors import DeidRefusedError

__all__ = ["clean_pixels"]


def clean_pixels(dataset: Dataset, rules: tuple[str, ...], reason: str) -> None:
    """Blank the regions the first matching rule names, in place.

    ``rules``: deid recipe files with ``%filter`` sections, or ``"deid"`` for the rules
    that ship with the deid library. Raises DeidRefusedError naming the instance's
    Manufacturer/ManufacturerModelName when no rule matches it.
    """
    raise DeidRefusedError(f"{reason}: no pixel-cleaning rule matches this instance")
