"""A read-only file object over a buffer, without copying it.

``io.BytesIO(bytearray)`` copies its whole buffer; pydicom's readers only need
``read``, ``seek`` and ``tell``, so this gives them those over a ``memoryview``
and copies only what they read.
"""

import io


class ViewReader:
    """``read``/``seek``/``tell`` over ``view``; reads return ``bytes`` copies."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        start = self._position
        end = len(self._view) if size is None or size < 0 else min(start + size, len(self._view))
        self._position = max(start, end)
        return self._view[start:end].tobytes()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, base[whence] + offset)
        return self._position

    def tell(self) -> int:
        return self._position
