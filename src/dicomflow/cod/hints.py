"""Hints: what a caller already knows about an instance before it is fetched."""

from dataclasses import dataclass

from dicomflow.errors import HintMismatchError


@dataclass(frozen=True)
class Hints:
    """Known facts about an instance, used to skip fetching duplicates.

    ``crc32c`` uses the datastore's format: base64 of the big-endian CRC32C
    (as Google Cloud Storage reports it). Hints are verified whenever the
    instance is fetched, so wrong hints raise instead of corrupting a series.
    The fields are in the original library's order (pass them by name).
    """

    size: int | None = None
    crc32c: str | None = None
    instance_uid: str | None = None
    series_uid: str | None = None
    study_uid: str | None = None

    def validate(
        self,
        true_size: int,
        true_crc32c: str,
        true_instance_uid: str,
        true_series_uid: str,
        true_study_uid: str,
    ) -> None:
        """Check every hint given against the instance's true values.

        Raises:
            HintMismatchError: (an ``AssertionError`` too) naming the first hint that is wrong.
        """
        checks = (
            ("size", self.size, true_size),
            ("crc32c", self.crc32c, true_crc32c),
            ("instance uid", self.instance_uid, true_instance_uid),
            ("series uid", self.series_uid, true_series_uid),
            ("study uid", self.study_uid, true_study_uid),
        )
        for name, hinted, true in checks:
            if hinted is not None and hinted != true:
                raise HintMismatchError(
                    f'{name} mismatch: the hint says "{str(hinted)[:80]}"; the file has "{true}".'
                )
