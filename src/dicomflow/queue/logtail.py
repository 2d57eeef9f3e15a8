"""The last lines of a log file of any size, read from its end."""

import os
from pathlib import Path

TAIL_LINES = 200
TAIL_BYTES = 64 * 1024
BLOCK = 8192


def read_tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES) -> str:
    """The last ``lines`` lines of ``path`` (at most ``max_bytes`` of them), "" if absent."""
    try:
        with path.open("rb") as stream:
            data = _read_back(stream.fileno(), lines, max_bytes)
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    kept = text.splitlines()[-lines:]
    return "\n".join(kept)


def _read_back(descriptor: int, lines: int, max_bytes: int) -> bytes:
    end = os.fstat(descriptor).st_size
    start = end
    data = b""
    while start > 0 and data.count(b"\n") <= lines and len(data) < max_bytes:
        start = max(0, start - BLOCK)
        data = os.pread(descriptor, end - start, start)
    return data[-max_bytes:]
