"""De-identification: the PS3.15 Basic Profile and its options, with keyed pseudonyms.

- :mod:`.profile` -- Table E.1-1 (from the standard), options by name, :class:`DeidProfile`.
- :mod:`.pseudonyms` -- the key file (0600) and HMAC pseudonyms for UIDs, patient IDs, dates.
- :mod:`.deidentifier` -- :class:`Deidentifier`, which applies a profile with pydicom's
  ``deid`` library; :mod:`.replacements` (the D, C and U values), :mod:`.content` (values
  without a row inside D and C sequences), :mod:`.groups` (private attributes, curves,
  overlays).
- :mod:`.reidentification` -- the optional administrator-only re-identification table.
- :mod:`.pixel_cleaning` -- cleaning burned-in annotation with ``deid``'s pixel rules.
"""

from dicomflow.dicom.deid.deidentifier import Deidentifier, DeidIdentity, burned_in_reason
from dicomflow.dicom.deid.profile import Action, DeidProfile, Option, SafePrivate
from dicomflow.dicom.deid.pseudonyms import Pseudonymizer, create_key_file, load_key_file
from dicomflow.dicom.deid.reidentification import ReidentificationTable

__all__ = [
    "Action",
    "DeidIdentity",
    "DeidProfile",
    "Deidentifier",
    "Option",
    "Pseudonymizer",
    "ReidentificationTable",
    "SafePrivate",
    "burned_in_reason",
    "create_key_file",
    "load_key_file",
]
