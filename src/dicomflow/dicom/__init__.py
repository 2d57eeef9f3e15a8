"""Pure DICOM helpers: tag parsing, safe path keys, grinders, dataset factories."""
