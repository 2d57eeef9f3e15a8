"""Instance: one DICOM Part-10 file to add to a COD series, wherever it lives.

``dicom_uri`` is where the bytes are now (it changes to the series tar member
once the instance is synced), ``_original_path`` is the URI it was created
with and never changes, and ``dependencies`` are files that may be deleted
once the instance is verified in a datastore.

The bytes are fetched once (``fetch()``, ``open()`` or any accessor) and kept in
memory; ``validate()`` reads the UIDs, size and crc32c and checks the hints.
"""

import io
import logging
from typing import Any

import fsspec  # type: ignore[import-untyped]
import pydicom
from pydicom.errors import InvalidDicomError

from dicomflow.cod import frames, metadata
from dicomflow.cod.checksum import checksum
from dicomflow.cod.hints import Hints
from dicomflow.errors import CODError, CODInstanceError, HintMismatchError

logger = logging.getLogger(__name__)

LOCAL_PROTOCOLS = frozenset({None, "file", "local"})
UID_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"]


def is_remote(uri: str) -> bool:
    """True unless ``uri`` is a path on this machine's filesystem."""
    protocol, _ = fsspec.core.split_protocol(uri)
    return protocol not in LOCAL_PROTOCOLS


def delete_local_file(uri: str) -> None:
    """Delete ``uri`` if it is a local file (a remote one is never deleted)."""
    if not is_remote(uri):
        fs, path = fsspec.core.url_to_fs(uri)
        fs.rm(path)
        logger.info("deleted local origin %s", uri)


class Instance:
    """A DICOM instance given by URI, with optional hints and dependencies."""

    def __init__(
        self,
        dicom_uri: str,
        dependencies: list[str] | None = None,
        hints: Hints | None = None,
        transport_params: dict[str, Any] | None = None,
    ) -> None:
        self.dicom_uri = dicom_uri
        self.dependencies = list(dependencies or [])
        self.hints = hints or Hints()
        self.transport_params = dict(transport_params or {})
        self._original_path = dicom_uri
        self._data: bytes | None = None
        self._verified_in: str | None = None
        self._metadata: dict[str, Any] | None = None
        self._custom_offset_tables: dict[str, Any] | None = None
        self._instance_uid: str | None = None
        self._series_uid: str | None = None
        self._study_uid: str | None = None
        self._size: int | None = None
        self._crc32c: str | None = None

    @classmethod
    def from_bytes(cls, data: bytes, dicom_uri: str) -> "Instance":
        """An instance whose Part-10 bytes the caller already holds (made in memory, e.g.
        de-identified); ``dicom_uri`` only names it (its recorded original path)."""
        instance = cls(dicom_uri)
        instance._data = data
        return instance

    def __repr__(self) -> str:
        return f"Instance({self._original_path!r})"

    @property
    def is_remote(self) -> bool:
        """True if ``dicom_uri`` is not a local path (``gs://``, ``s3://``, ``https://``...)."""
        return is_remote(self.dicom_uri)

    def fetch(self) -> None:
        """Read the instance's bytes once (they stay in memory) and check size/crc32c hints.

        Raises:
            CODInstanceError: if the file cannot be read or a size/crc32c hint is wrong.
        """
        self._bytes()

    def _bytes(self) -> bytes:
        if self._data is None:
            self._data = self._fetch()
        return self._data

    def open(self) -> io.BytesIO:
        """Return the instance's bytes (fetched once, checked against the hints)."""
        return io.BytesIO(self._bytes())

    def _fetch(self) -> bytes:
        try:
            with fsspec.open(self.dicom_uri, "rb", **self._storage_options()) as file:
                data: bytes = file.read()
        except OSError as exc:
            why = "not found" if isinstance(exc, FileNotFoundError) else "cannot be read"
            raise CODInstanceError(f'Instance "{self._original_path}" {why}: {exc}.') from exc
        self._check_hints(data)
        return data

    def _storage_options(self) -> dict[str, Any]:
        """``transport_params`` as fsspec storage options: a ``client`` (the original
        library's smart_open client) is not one, and is left out."""
        return {key: value for key, value in self.transport_params.items() if key != "client"}

    def _check_hints(self, data: bytes) -> None:
        size, crc = self.hints.size, self.hints.crc32c
        if size is not None and size != len(data):
            raise HintMismatchError(
                f'Instance "{self._original_path}" has size {len(data)}; its hint says {size} '
                "(size mismatch)."
            )
        if crc is not None and crc != checksum(data):
            raise HintMismatchError(
                f'Instance "{self._original_path}" has crc32c "{checksum(data)}"; '
                f'its hint says "{crc}" (crc32c mismatch).'
            )

    def validate(self) -> bool:
        """Read the UIDs, size and crc32c of the file and check every hint against them.

        Returns True. Raises:
            CODInstanceError: if the file cannot be read or is not DICOM.
            HintMismatchError: (an ``AssertionError`` too) if a hint is wrong.
        """
        data = self.open().getvalue()
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=UID_TAGS)
        except (InvalidDicomError, ValueError, EOFError) as exc:
            raise CODInstanceError(f"Instance {self!r} is not readable DICOM: {exc}.") from exc
        self._remember(
            [str(ds.get(keyword, "")) for keyword in UID_TAGS], len(data), checksum(data)
        )
        self.hints.validate(
            len(data),
            checksum(data),
            str(self._instance_uid),
            str(self._series_uid),
            str(self._study_uid),
        )
        return True

    def _remember(self, uids: list[str], size: int, crc32c: str) -> None:
        """Keep the values read from the file (study, series, instance UIDs; size; crc32c)."""
        self._study_uid, self._series_uid, self._instance_uid = uids
        self._size, self._crc32c = size, crc32c

    def _known(self, name: str, trust_hints_if_available: bool) -> Any:
        hinted = getattr(self.hints, name)
        if trust_hints_if_available and hinted is not None:
            return hinted
        if getattr(self, f"_{name}") is None:
            self.validate()
        return getattr(self, f"_{name}")

    def size(self, trust_hints_if_available: bool = False) -> int:
        """The file's size in bytes (the hint's, if trusted and given)."""
        return int(self._known("size", trust_hints_if_available))

    def crc32c(self, trust_hints_if_available: bool = False) -> str:
        """The file's crc32c, base64 of the big-endian value (the hint's, if trusted)."""
        return str(self._known("crc32c", trust_hints_if_available))

    def instance_uid(self, trust_hints_if_available: bool = False) -> str:
        """The SOPInstanceUID in the file (the hint's, if trusted and given)."""
        return str(self._known("instance_uid", trust_hints_if_available))

    def series_uid(self, trust_hints_if_available: bool = False) -> str:
        """The SeriesInstanceUID in the file (the hint's, if trusted and given)."""
        return str(self._known("series_uid", trust_hints_if_available))

    def study_uid(self, trust_hints_if_available: bool = False) -> str:
        """The StudyInstanceUID in the file (the hint's, if trusted and given)."""
        return str(self._known("study_uid", trust_hints_if_available))

    @property
    def metadata(self) -> dict[str, Any]:
        """The instance as DICOM JSON (file meta + dataset; bulk data as ``BulkDataURI``)."""
        if self._metadata is None:
            return self.extract_metadata(self.dicom_uri)
        return self._metadata

    def extract_metadata(self, output_uri: str) -> dict[str, Any]:
        """Compute and return :attr:`metadata`, bulk data referenced as ``{output_uri}#{tag}``."""
        try:
            ds = pydicom.dcmread(self.open(), defer_size=metadata.BULK_DATA_THRESHOLD)
        except (InvalidDicomError, ValueError, EOFError) as exc:
            raise CODInstanceError(f"Instance {self!r} is not readable DICOM: {exc}.") from exc
        self._metadata = metadata.dicom_json(ds, output_uri)
        self._custom_offset_tables = frames.offset_tables(self.open().getvalue()) or {}
        return self._metadata

    def delete_dependencies(self, dryrun: bool = False) -> list[str]:
        """Delete the dependency files; allowed only once verified in a datastore.

        Returns the URIs deleted (with ``dryrun``, those that would be). Raises:
            CODError: if the instance has not been verified in a datastore.
        """
        if self._verified_in is None:
            raise CODError(
                f'Instance "{self._original_path}" has not been verified in a datastore; '
                "its dependencies cannot be deleted."
            )
        if dryrun:
            return list(self.dependencies)
        for uri in self.dependencies:
            fs, path = fsspec.core.url_to_fs(uri)
            fs.rm(path)
            logger.info("deleted dependency %s of %s", uri, self._verified_in)
        return list(self.dependencies)
