"""Hints: what a caller already knows about an instance before it is fetched."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Hints:
    """Known facts about an instance, used to skip fetching duplicates.

    ``crc32c`` uses the datastore's format: base64 of the big-endian CRC32C
    (as Google Cloud Storage reports it). Hints are verified whenever the
    instance is fetched, so wrong hints raise instead of corrupting a series.
    """

    instance_uid: str | None = None
    crc32c: str | None = None
    size: int | None = None
