"""Helpers of the COD tests: synthetic series on disk and Instances for them."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import Dataset

from dicomflow.cod import Hints, Instance
from dicomflow.cod.checksum import checksum
from dicomflow.dicom.factory import make_ct_series, write_series


@dataclass
class Series:
    datasets: list[Dataset]
    paths: list[Path]

    @property
    def study_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    def uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]

    def instances(self, hinted: bool = False) -> list[Instance]:
        """Return one Instance per file, with uid + crc32c + size hints when ``hinted``."""
        result = []
        for ds, path in zip(self.datasets, self.paths, strict=True):
            hints = None
            if hinted:
                data = path.read_bytes()
                hints = Hints(
                    instance_uid=str(ds.SOPInstanceUID), crc32c=checksum(data), size=len(data)
                )
            result.append(Instance(str(path), hints=hints))
        return result


SeriesFactory = Callable[..., Series]
BUCKET = "cod-tests"  # the bucket of the S3 tests


def make_series(directory: Path, count: int, **kwargs: Any) -> Series:
    """Write ``count`` CT instances (8x8 pixels unless told) of one series to ``directory``."""
    kwargs.setdefault("rows", 8)
    kwargs.setdefault("columns", 8)
    datasets = make_ct_series(count, **kwargs)
    return Series(datasets, write_series(datasets, directory))
