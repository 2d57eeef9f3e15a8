"""Folders for pipeline code: ``Directory`` (made if missing), ``File``, and a temporary
working directory.

Inside a round, the worker already runs in the round's own ``work/`` folder,
emptied afterwards: :class:`TemporaryWorkingDirectory` is for code outside one.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType


class IOObject:
    """A path on disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)

    @property
    def path(self) -> Path:
        return self._path

    def __eq__(self, value: object) -> bool:
        if not isinstance(value, IOObject):
            raise TypeError(
                f"Cannot compare a {type(self).__name__} with a {type(value).__name__}."
            )
        return self.path == value.path

    def __hash__(self) -> int:
        return hash(self.path)


class File(IOObject):
    """A file's path."""


class Directory(IOObject):
    """A folder: made if missing and ``create_if_missing``.

    Raises:
        NotADirectoryError: if the path is something else, or missing and not to be made.
    """

    def __init__(self, path: str | os.PathLike[str], create_if_missing: bool = True) -> None:
        super().__init__(path)
        if self.path.exists():
            if not self.path.is_dir():
                raise NotADirectoryError(f'"{self.path}" is not a folder.')
        elif create_if_missing:
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            raise NotADirectoryError(f'The folder "{self.path}" does not exist.')

    def __truediv__(self, name: str | os.PathLike[str]) -> Path:
        return self.path / name

    def __iter__(self) -> Iterator[Path]:
        return self.path.iterdir()

    def __str__(self) -> str:
        return str(self.path)


class TemporaryWorkingDirectory:
    """``with TemporaryWorkingDirectory(path):`` works in ``path`` (made if missing), then
    returns to the previous working directory and removes ``path``."""

    def __init__(self, path_to_new_dir: str | os.PathLike[str]) -> None:
        self.temp_directory_path = Path(path_to_new_dir)
        self._previous = os.getcwd()
        self.temp_directory_path.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> "TemporaryWorkingDirectory":
        self._previous = os.getcwd()
        os.chdir(self.temp_directory_path)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        os.chdir(self._previous)
        shutil.rmtree(self.temp_directory_path, ignore_errors=True)
