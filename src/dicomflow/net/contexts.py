"""Presentation contexts: which SOP classes and transfer syntaxes the node accepts."""

from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AllStoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

UNCOMPRESSED = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]
COMPRESSED = [
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]
ACCEPTED_TRANSFER_SYNTAXES: list[str | UID] = [*UNCOMPRESSED, *COMPRESSED]


def storage_contexts() -> list[PresentationContext]:
    """Every storage SOP class with every accepted transfer syntax, plus Verification."""
    contexts = [
        build_context(str(context.abstract_syntax), ACCEPTED_TRANSFER_SYNTAXES)
        for context in AllStoragePresentationContexts
    ]
    return [*contexts, build_context(Verification)]
