"""Person names for display: "Prefix Given Middle Family Suffix"."""

from pydicom.valuerep import PersonName

_MAX_COMPONENTS = 5


def format_from_patient_name_str(patient_name: str) -> str:
    """Return the ``^``-separated DICOM name ``patient_name`` in display order.

    Raises:
        ValueError: if the name has more than five components.
    """
    parts = patient_name.split("^")
    if len(parts) > _MAX_COMPONENTS:
        raise ValueError(f"A person name has at most 5 components; got {len(parts)}.")
    family, given, middle, prefix, suffix = parts + [""] * (_MAX_COMPONENTS - len(parts))
    return _display(prefix, given, middle, family, suffix)


def format_from_patient_name(person_name: PersonName) -> str:
    """Return ``person_name`` in display order."""
    return _display(
        person_name.name_prefix,
        person_name.given_name,
        person_name.middle_name,
        person_name.family_name,
        person_name.name_suffix,
    )


def _display(prefix: str, given: str, middle: str, family: str, suffix: str) -> str:
    words = [prefix, given.capitalize(), middle.capitalize(), family.capitalize(), suffix]
    return " ".join(word.strip() for word in words if word.strip())
