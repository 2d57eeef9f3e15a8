"""``InputContainer``: what ``process()`` receives for one round.

``container[name]`` is what input ``name``'s grinder made of its instances
(``get_data()``); ``container.datasets[name]`` the instances themselves, read from
the round's files when first asked for; ``container.paths[name]`` those files.
"""

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread

from dicomflow.address import Address


class InputContainer(dict[str, Any]):
    """Input name -> grinder result, with the round's datasets, files and caller.

    ``responding_address`` is the peer whose association completed the round
    (its AE title and IP address; the port is the pipeline's ``default_response_port``
    unless ``known_endpoints`` names that AE title), or ``None`` if unknown.
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        datasets: Mapping[str, list[Dataset]] | None = None,
        paths: Mapping[str, list[Path]] | Any = None,
        *,
        round_id: str = "",
        patient_key: str = "",
        responding_address: Address | None = None,
    ) -> None:
        super().__init__(data)
        files = dict(paths) if isinstance(paths, Mapping) else {}
        self.paths: Any = files if paths is None or files else paths  # as given, if not a map
        self.datasets: Mapping[str, list[Dataset]] = (
            dict(datasets) if datasets is not None else FileDatasets(files)
        )
        self.round_id = round_id
        self.patient_key = patient_key
        self.responding_address = responding_address


class FileDatasets(Mapping[str, list[Dataset]]):
    """Input name -> its instances, each read from its file on first access."""

    def __init__(self, paths: Mapping[str, list[Path]]) -> None:
        self._paths = paths
        self._read: dict[str, list[Dataset]] = {}

    def __getitem__(self, name: str) -> list[Dataset]:
        if name not in self._read:
            self._read[name] = [dcmread(path) for path in self._paths[name]]
        return self._read[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)
