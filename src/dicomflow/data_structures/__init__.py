"""The pipeline library's ``data_structures`` import path (``dicomnode.data_structures``)."""
