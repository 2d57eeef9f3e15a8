"""Where a series lives in a COD datastore.

Per series: ``{root}/studies/{study_uid}/series/{series_uid}.tar`` holds the
members ``instances/{sop_instance_uid}.dcm``; ``{root}/studies/{study_uid}/
series/{series_uid}/`` holds ``metadata.json``, the ``.cod.lock`` file and, once
a writer reports a problem, ``error.log``.
Every UID is checked against the DICOM UID grammar before a path or a member
name is built from it, so ``../../x``, ``/abs``, ``""`` and over-long values
never reach the filesystem.
"""

from dataclasses import dataclass

import fsspec  # type: ignore[import-untyped]
from fsspec import AbstractFileSystem

from dicomflow.dicom.keys import uid_key

LOCK_NAME = ".cod.lock"
METADATA_NAME = "metadata.json"
ERROR_LOG_NAME = "error.log"


def open_datastore(datastore_path: str, client: object = None) -> tuple[AbstractFileSystem, str]:
    """Return the filesystem and root path of a datastore URL (a local path by default).

    ``client`` is used as the filesystem if it is an fsspec filesystem; any other
    client object is not (fsspec finds the filesystem from the URL).
    """
    if isinstance(client, AbstractFileSystem):
        return client, str(client._strip_protocol(datastore_path)).rstrip("/")
    fs, root = fsspec.core.url_to_fs(datastore_path)
    return fs, str(root).rstrip("/")


def delete_folders(client: object, uris: list[str]) -> None:
    """Delete everything under each folder URI (a test datastore's reset); ``client``
    is accepted for the original signature and not used."""
    for uri in uris:
        fs, path = fsspec.core.url_to_fs(uri)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def member_name(sop_instance_uid: str) -> str:
    """Return the tar member name of an instance, after validating its UID."""
    return f"instances/{uid_key(sop_instance_uid)}.dcm"


@dataclass(frozen=True)
class SeriesLayout:
    """The paths of one series (UIDs are validated on construction)."""

    root: str
    study_uid: str
    series_uid: str

    def __post_init__(self) -> None:
        uid_key(self.study_uid, "StudyInstanceUID")
        uid_key(self.series_uid, "SeriesInstanceUID")

    @property
    def series_dir(self) -> str:
        return f"{self.root}/studies/{self.study_uid}/series"

    @property
    def tar(self) -> str:
        return f"{self.series_dir}/{self.series_uid}.tar"

    @property
    def folder(self) -> str:
        return f"{self.series_dir}/{self.series_uid}"

    @property
    def metadata(self) -> str:
        return f"{self.folder}/{METADATA_NAME}"

    @property
    def lock(self) -> str:
        return f"{self.folder}/{LOCK_NAME}"

    @property
    def error_log(self) -> str:
        return f"{self.folder}/{ERROR_LOG_NAME}"


class SeriesURIs:
    """The URIs of a series' objects, built on ``datastore_path`` as the caller gave it
    (the original library's ``tar_uri``, ``metadata_uri``...); the UIDs are the
    validated ones of ``layout``."""

    datastore_path: str
    layout: SeriesLayout

    @property
    def datastore_series_uri(self) -> str:
        """``{datastore_path}/studies/{study_uid}/series/{series_uid}``."""
        base = self.datastore_path.rstrip("/")
        return f"{base}/studies/{self.layout.study_uid}/series/{self.layout.series_uid}"

    @property
    def tar_uri(self) -> str:
        return f"{self.datastore_series_uri}.tar"

    @property
    def metadata_uri(self) -> str:
        return f"{self.datastore_series_uri}/metadata.json"

    @property
    def index_uri(self) -> str:
        """Where the original library kept a tar index; dicomflow writes none (the
        metadata's byte ranges are the index)."""
        return f"{self.datastore_series_uri}/index.sqlite"

    @property
    def error_log_uri(self) -> str:
        return f"{self.datastore_series_uri}/error.log"

    def __str__(self) -> str:
        return f"CODObject({self.datastore_series_uri})"
