"""Locker: the ``.cod.lock`` file that gives one writer a series.

Acquiring writes a random token (the lock's *generation*) with an exclusive
create (``fs.open(path, "xb")``): on a local directory this is ``O_EXCL`` and
atomic across processes; on ``memory://`` it is a check-then-create within one
process (best effort, fine for tests). Before every write the writer checks
that the lock file still holds its token. That check and the write that
follows are two steps: a lock broken by hand between them is not detected (an
object store would use a generation precondition on the write itself).
"""

import secrets

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]

from dicomflow.errors import LockAcquisitionError


class Locker:
    """Acquire, verify and release the lock file at ``path``."""

    def __init__(self, fs: AbstractFileSystem, path: str) -> None:
        self.fs = fs
        self.path = path
        self.token: str | None = None

    def acquire(self) -> str:
        """Create the lock file with a fresh token; raise if it already exists."""
        token = secrets.token_hex(16)
        self.fs.makedirs(self.path.rsplit("/", 1)[0], exist_ok=True)
        try:
            with self.fs.open(self.path, "xb") as file:
                file.write(token.encode("ascii"))
        except FileExistsError as exc:
            raise LockAcquisitionError(f'Lock "{self.path}" is already held.') from exc
        self.token = token
        return token

    def reacquire(self, token: str) -> None:
        """Take over a lock this process held before (e.g. across serialization)."""
        self.token = token
        self.verify()

    def holder(self) -> str | None:
        """Return the token in the lock file, or ``None`` if there is no lock."""
        try:
            data: bytes = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        return data.decode("ascii", "replace")

    def verify(self) -> None:
        """Raise unless the lock file exists and still holds our token."""
        held = self.holder()
        if self.token is None or held != self.token:
            raise LockAcquisitionError(
                f'Lock "{self.path}" holds generation "{held}"; expected "{self.token}".'
            )

    def release(self) -> None:
        """Delete the lock file after checking it is still ours."""
        self.verify()
        self.fs.rm(self.path)
        self.token = None
