"""DICOMweb over the archive: QIDO-RS, WADO-RS and STOW-RS."""

from fastapi import APIRouter

router = APIRouter()
