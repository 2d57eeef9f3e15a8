"""Write protection for a job process: Landlock (Linux 5.13+), through raw system calls.

:func:`protect` makes the calling process, and every process it starts, unable
to create, write, truncate, rename, link or remove anything beneath the
``protected`` directories, except beneath the ``writable`` ones (which lie inside
them). Reading is not restricted, nor is writing anywhere else.

Landlock grants rights on file hierarchies and cannot deny one below a grant,
so "everything but these directories" is spelt out: every entry of every
directory on the way from ``/`` to a protected directory gets the rights, except
the entries on the way; inside a protected directory only the way to the
writable directories is walked. Consequences: new entries made later directly
in a directory on the way (``/tmp`` when the data directory is below it) cannot
be written by the job, and symbolic links on the way are not followed (their
targets are reached by their own paths).

Where the kernel has no Landlock (or it is disabled), :func:`protect` logs a
warning and returns False: the job runs unprotected. So does a ``writable``
directory that contains a ``protected`` one (granting it would lift the
protection).

:func:`protect_job` is what a queue job calls first: its temporary files go to
its working directory (which the queue empties after each attempt), then
:func:`protect`.
"""

import ctypes
import errno
import logging
import os
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path

from dicomflow.errors import LandlockUnavailable

logger = logging.getLogger(__name__)

SYS_CREATE_RULESET = 444  # the same number on every architecture (new system calls)
SYS_ADD_RULE = 445
SYS_RESTRICT_SELF = 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

WRITE_FILE = 1 << 1
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: moving and linking between directories
TRUNCATE = 1 << 14  # ABI 3
WRITES_V1 = (
    WRITE_FILE
    | REMOVE_DIR
    | REMOVE_FILE
    | MAKE_CHAR
    | MAKE_DIR
    | MAKE_REG
    | MAKE_SOCK
    | MAKE_FIFO
    | MAKE_BLOCK
    | MAKE_SYM
)
FILE_RIGHTS = WRITE_FILE | TRUNCATE  # the rights that apply to a file that is not a directory
PATH_BENEATH = struct.Struct("<Qi")  # allowed access, parent fd (a packed C struct)


def protect(protected: Sequence[Path], writable: Sequence[Path] = ()) -> bool:
    """Forbid writing beneath ``protected`` except beneath ``writable``, for this process
    and its descendants, irrevocably; False (and a warning) where Landlock is missing.
    ``writable`` places outside ``protected`` are writable anyway."""
    enclosing = _enclosing(protected, writable)
    if enclosing:
        logger.warning("the job's files are not write-protected: %s", enclosing)
        return False
    kernel = _Kernel()
    try:
        handled = _handled_rights(kernel.abi())
        ruleset = kernel.create_ruleset(handled)
    except LandlockUnavailable as exc:
        logger.warning("the job's files are not write-protected: %s", exc)
        return False
    try:
        walk = _Walk(
            [_real(p) for p in protected], _inside([_real(p) for p in writable], protected)
        )
        for path, is_directory in walk.grants(Path("/")):
            kernel.add_rule(ruleset, path, handled if is_directory else handled & FILE_RIGHTS)
        kernel.restrict_self(ruleset)
    finally:
        os.close(ruleset)
    return True


def protect_job(protected: Sequence[Path], writable: Sequence[Path] = ()) -> bool:
    """:func:`protect` for a queue job: its temporary files (``TMPDIR``) go to its working
    directory first, since new entries on the way to ``protected`` (``/tmp`` when the data
    directory is below it) cannot be made once protected."""
    os.environ["TMPDIR"] = os.getcwd()
    tempfile.tempdir = None  # found again, from TMPDIR
    return protect(protected, writable)


def _inside(writable: list[Path], protected: Sequence[Path]) -> list[Path]:
    """The ``writable`` places beneath a protected one (the others need no grant, and would
    only make their parent directories "on the way")."""
    guarded = [str(_real(place)) for place in protected]
    return [place for place in writable if any(_beneath(str(place), g) for g in guarded)]


def _enclosing(protected: Sequence[Path], writable: Sequence[Path]) -> str:
    """Why ``writable`` would lift the protection ("" if it would not)."""
    for place in writable:
        for guarded in protected:
            if _beneath(str(_real(guarded)), str(_real(place))):
                return f"the writable directory {place} contains the protected directory {guarded}"
    return ""


class _Walk:
    """Which paths get write rights: everything but ``protected``, minus ``writable``."""

    def __init__(self, protected: list[Path], writable: list[Path]) -> None:
        self.protected = [str(path) for path in protected]
        self.writable = [str(path) for path in writable]

    def grants(self, directory: Path) -> list[tuple[Path, bool]]:
        """``(path, is a directory)`` to grant among the entries below ``directory``."""
        found: list[tuple[Path, bool]] = []
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return found
        for entry in entries:
            if entry.is_symlink():
                continue
            is_directory = entry.is_dir(follow_symlinks=False)
            if self._granted(entry.path):
                found.append((Path(entry.path), is_directory))
            elif is_directory and self._on_the_way(entry.path):
                found.extend(self.grants(Path(entry.path)))
        return found

    def _granted(self, path: str) -> bool:
        if any(_beneath(path, place) for place in self.writable):
            return True
        return not self._on_the_way(path) and not any(
            _beneath(path, place) for place in self.protected
        )

    def _on_the_way(self, path: str) -> bool:
        """Whether a protected or writable directory lies strictly below ``path``."""
        return any(
            place != path and _beneath(place, path) for place in [*self.protected, *self.writable]
        )


def _beneath(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or lies below it (both absolute and normal)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


class _Kernel:
    """The Landlock system calls, through the C library's ``syscall``."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = self._libc.syscall
        self._syscall.restype = ctypes.c_long

    def call(self, number: int, *arguments: object) -> int:
        result = int(self._syscall(ctypes.c_long(number), *arguments))
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return result

    def abi(self) -> int:
        """The Landlock ABI version of the running kernel."""
        try:
            return self.call(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), CREATE_RULESET_VERSION)
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                raise LandlockUnavailable("this kernel has no Landlock") from exc
            if exc.errno == errno.EOPNOTSUPP:
                raise LandlockUnavailable("Landlock is disabled at boot (lsm=)") from exc
            raise LandlockUnavailable(f"Landlock cannot be used: {exc}") from exc

    def create_ruleset(self, handled: int) -> int:
        attribute = ctypes.create_string_buffer(struct.pack("<Q", handled), 8)
        try:
            return self.call(SYS_CREATE_RULESET, attribute, ctypes.c_size_t(8), 0)
        except OSError as exc:
            raise LandlockUnavailable(f"Landlock cannot make a ruleset: {exc}") from exc

    def add_rule(self, ruleset: int, path: Path, rights: int) -> None:
        try:
            descriptor = os.open(path, os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return  # gone meanwhile: nothing to grant
        try:
            data = PATH_BENEATH.pack(rights, descriptor)
            attribute = ctypes.create_string_buffer(data, len(data))
            self.call(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, attribute, 0)
        finally:
            os.close(descriptor)

    def restrict_self(self, ruleset: int) -> None:
        if self._libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(code)}")
        self.call(SYS_RESTRICT_SELF, ruleset, 0)


def _handled_rights(abi: int) -> int:
    rights = WRITES_V1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    return rights
