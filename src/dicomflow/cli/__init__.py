"""The ``dicomflow`` command."""
