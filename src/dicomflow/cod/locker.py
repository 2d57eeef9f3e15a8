"""Locker: the ``.cod.lock`` object that gives one writer a series.

Acquiring writes a random token (the lock's *generation*) with an exclusive
create: ``O_EXCL`` on a local directory (atomic across processes),
``If-None-Match: *`` on S3 (atomic on the server), a check-then-create on
``memory://`` (one process; fine for tests). Before every write the writer
checks that the lock still holds its token. On a store without preconditions
that check and the write that follows are two steps, so a lock broken by hand
between them is not detected; on S3 every write of the tar and the metadata is
also conditional on the ETag this writer last saw (see
:mod:`dicomflow.cod.store`), so a writer whose lock was broken cannot overwrite
what the new holder wrote, and releasing deletes the lock only if it is still
the object this writer created (``If-Match``).
"""

import secrets

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]

from dicomflow.cod.store import Generation, Store
from dicomflow.cod.store_registry import open_store
from dicomflow.errors import LockAcquisitionError, LockVerificationError


class LockBlob:
    """The lock object as a blob: what a caller inspects (``exists()``) or, to simulate
    another writer, breaks (``delete()``, ``upload_from_string()``)."""

    def __init__(self, store: Store, path: str) -> None:
        self.store = store
        self.name = path

    def exists(self) -> bool:
        """True if the lock object is in the datastore."""
        return self.store.generation(self.name) is not None

    def download_as_bytes(self) -> bytes:
        """The lock object's content (the holder's generation). Raises FileNotFoundError."""
        return self.store.read(self.name)[0]

    def upload_from_string(
        self,
        data: str | bytes,
        content_type: str | None = None,
        if_generation_match: int | None = None,
    ) -> None:
        """Write the lock object (``if_generation_match=0``: only if it does not exist)."""
        content = data.encode("utf-8") if isinstance(data, str) else data
        if if_generation_match == 0:
            self.store.create(self.name, content)
        else:
            self.store.fs.pipe_file(self.name, content)

    def delete(self) -> None:
        """Delete the lock object, whoever holds it."""
        self.store.fs.rm(self.name)


class Locker:
    """Acquire, verify and release the lock object at ``path``."""

    def __init__(self, store: Store | AbstractFileSystem, path: str) -> None:
        self.store = store if isinstance(store, Store) else open_store(store)
        self.path = path
        self.token: str | None = None
        self._generation: Generation = None

    def acquire(self) -> str:
        """Create the lock object with a fresh token; raise if it already exists."""
        token = secrets.token_hex(16)
        try:
            self._generation = self.store.create(self.path, token.encode("ascii"))
        except FileExistsError as exc:
            raise LockAcquisitionError(f'Lock "{self.path}" is already held.') from exc
        self.token = token
        return token

    def reacquire(self, token: str) -> None:
        """Take over a lock this process held before (e.g. across serialization)."""
        self.token = token
        self.verify()

    def holder(self) -> str | None:
        """Return the token in the lock object, or ``None`` if there is no lock."""
        try:
            data, self._generation = self.store.read(self.path)
        except FileNotFoundError:
            return None
        return data.decode("ascii", "replace")

    def verify(self) -> None:
        """Raise LockVerificationError unless the lock object exists and holds our token."""
        held = self.holder()
        if self.token is None or held != self.token:
            raise LockVerificationError(
                f'Lock "{self.path}" holds generation "{held}"; expected "{self.token}".'
            )

    def release(self) -> None:
        """Delete the lock object after checking it is still ours."""
        self.verify()
        self.store.delete(self.path, self._generation)
        self.token = None

    def get_lock_blob(self) -> LockBlob:
        """The lock object, to ask whether it exists."""
        return LockBlob(self.store, self.path)
