"""Instance: one DICOM Part-10 file to add to a COD series, wherever it lives.

``dicom_uri`` is where the bytes are now (it changes to the series tar member
once the instance is synced), ``_original_path`` is the URI it was created
with and never changes, and ``dependencies`` are files that may be deleted
once the instance is verified in a datastore.
"""

import io
import logging

import fsspec  # type: ignore[import-untyped]

from dicomflow.cod.checksum import checksum
from dicomflow.cod.hints import Hints
from dicomflow.errors import CODError, CODInstanceError

logger = logging.getLogger(__name__)


class Instance:
    """A DICOM instance given by URI, with optional hints and dependencies."""

    def __init__(
        self,
        dicom_uri: str,
        dependencies: list[str] | None = None,
        hints: Hints | None = None,
    ) -> None:
        self.dicom_uri = dicom_uri
        self.dependencies = list(dependencies or [])
        self.hints = hints or Hints()
        self._original_path = dicom_uri
        self._data: bytes | None = None
        self._verified_in: str | None = None

    def __repr__(self) -> str:
        return f"Instance({self._original_path!r})"

    def open(self) -> io.BytesIO:
        """Return the instance's bytes, fetched once and checked against the hints.

        Raises:
            CODInstanceError: if the file cannot be read or a size/crc32c hint is wrong.
        """
        if self._data is None:
            self._data = self._fetch()
        return io.BytesIO(self._data)

    def _fetch(self) -> bytes:
        try:
            with fsspec.open(self.dicom_uri, "rb") as file:
                data: bytes = file.read()
        except OSError as exc:
            raise CODInstanceError(
                f'Instance "{self._original_path}" cannot be read: {exc}.'
            ) from exc
        self._check_hints(data)
        return data

    def _check_hints(self, data: bytes) -> None:
        size, crc = self.hints.size, self.hints.crc32c
        if size is not None and size != len(data):
            raise CODInstanceError(
                f'Instance "{self._original_path}" has size {len(data)}; its hint says {size}.'
            )
        if crc is not None and crc != checksum(data):
            raise CODInstanceError(
                f'Instance "{self._original_path}" has crc32c "{checksum(data)}"; '
                f'its hint says "{crc}".'
            )

    def delete_dependencies(self) -> list[str]:
        """Delete the dependency files; allowed only once verified in a datastore.

        Returns the URIs deleted. Raises:
            CODError: if the instance has not been verified in a datastore.
        """
        if self._verified_in is None:
            raise CODError(
                f'Instance "{self._original_path}" has not been verified in a datastore; '
                "its dependencies cannot be deleted."
            )
        for uri in self.dependencies:
            fs, path = fsspec.core.url_to_fs(uri)
            fs.rm(path)
            logger.info("deleted dependency %s of %s", uri, self._verified_in)
        return list(self.dependencies)
