"""DICOMweb over the archive (QIDO-RS, WADO-RS, STOW-RS); the routes are in ``routes``."""
