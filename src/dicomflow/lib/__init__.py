"""Seed-compatible import paths (``dicomflow.lib.dimse``, ``.grinders``, ``.utils``).

New code should import from :mod:`dicomflow.net`, :mod:`dicomflow.dicom.grinders`
and :mod:`dicomflow.node`.
"""
