"""A job's output, captured into its log file with a cap.

The job's stdout and stderr are a pipe that the fork server reads while the job
runs (so output of any size never blocks the job). The first half of the cap
goes to the log file as it comes; the last half is kept in memory and written
after a line counting the bytes left out between them, once the job has ended.
A cap of 0 keeps everything. A log file that cannot be made or written (a full
disk) loses the output, never the job: nothing more is written to it.
"""

import os
from collections import deque

MARKER = (
    "\n[dicomflow: {count} bytes of output left out here; the first {head} and the last"
    " {tail} bytes are kept (setting job_output_limit_bytes)]\n"
)


class Capture:
    """Writes one job's output to ``path``: head, a count of what was left out, tail."""

    def __init__(self, path: str, limit_bytes: int) -> None:
        try:
            self._descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError:
            self._descriptor = os.open(os.devnull, os.O_WRONLY)
        self._writable = True
        self.limit_bytes = limit_bytes
        self.head_bytes = limit_bytes - limit_bytes // 2
        self.tail_bytes = limit_bytes // 2
        self.left_out = 0
        self._head_left = self.head_bytes
        self._tail: deque[bytes] = deque()
        self._tail_size = 0

    def write(self, data: bytes) -> None:
        if not self.limit_bytes:
            self._write(data)
            return
        if self._head_left:
            head = data[: self._head_left]
            self._write(head)
            self._head_left -= len(head)
            data = data[len(head) :]
        if data:
            self._keep_tail(data)

    def close(self) -> None:
        """Write the count of bytes left out and the tail; close the file."""
        try:
            if self.left_out:
                text = MARKER.format(
                    count=self.left_out, head=self.head_bytes, tail=self.tail_bytes
                )
                self._write(text.encode())
            for chunk in self._tail:
                self._write(chunk)
        finally:
            self._tail.clear()
            os.close(self._descriptor)

    def _keep_tail(self, data: bytes) -> None:
        self._tail.append(data)
        self._tail_size += len(data)
        while self._tail and self._tail_size - len(self._tail[0]) >= self.tail_bytes:
            dropped = self._tail.popleft()
            self._tail_size -= len(dropped)
            self.left_out += len(dropped)
        excess = self._tail_size - self.tail_bytes
        if excess > 0 and self._tail:
            self._tail[0] = self._tail[0][excess:]
            self._tail_size -= excess
            self.left_out += excess

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view and self._writable:
                view = view[os.write(self._descriptor, view) :]
        except OSError:
            self._writable = False
