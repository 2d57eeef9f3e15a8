"""Fresh UIDs for built instances and series."""

from pydicom.uid import UID, generate_uid


def gen_uid() -> UID:
    """Return a new globally unique UID (pydicom's root, at most 64 digits and dots)."""
    return generate_uid()
