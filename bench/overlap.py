"""Would writing a large instance's journal record while it arrives pay off?

Simulates one association receiving 525 kB instances (one 512x512 CT slice) that
take ``--arrival-ms`` each to arrive, stored in a pre-zeroed journal segment:

- ``buffered``: the whole instance arrives, then ``pwrite`` + ``fdatasync`` (what
  the node does);
- ``streamed``: each 64 kB fragment is written as it arrives, ``fdatasync`` at
  the end;
- ``streamed + kick``: the same, with ``sync_file_range(SYNC_FILE_RANGE_WRITE)``
  after each fragment so that write-back starts during the arrival.

Prints MB/s for each, three rounds. ``.venv/bin/python bench/overlap.py``
"""

import argparse
import ctypes
import ctypes.util
import os
import tempfile
import time
from collections.abc import Callable

SYNC_FILE_RANGE_WRITE = 2
INSTANCE_BYTES = 525_000
FRAGMENT_BYTES = 64 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--arrival-ms", type=float, default=1.1, help="network time per instance")
    parser.add_argument("--workdir", help="where to put the segment (default: temp dir)")
    args = parser.parse_args()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        path = os.path.join(folder, "segment")
        size = args.instances * INSTANCE_BYTES + (1 << 20)
        with open(path, "wb") as segment:
            for _ in range(0, size, 1 << 20):
                segment.write(bytes(1 << 20))
            segment.flush()
            os.fsync(segment.fileno())
        descriptor = os.open(path, os.O_RDWR)
        try:
            run = Runner(descriptor, libc, args.instances, args.arrival_ms / 1000)
            for _ in range(3):
                results = {name: run(name, store) for name, store in run.variants().items()}
                print("   ".join(f"{name} {rate:.0f} MB/s" for name, rate in results.items()))
        finally:
            os.close(descriptor)


class Runner:
    def __init__(self, descriptor: int, libc: ctypes.CDLL, count: int, arrival_s: float) -> None:
        self.descriptor = descriptor
        self.libc = libc
        self.count = count
        self.arrival_s = arrival_s
        self.instance = os.urandom(INSTANCE_BYTES)
        self.fragments = [
            self.instance[i : i + FRAGMENT_BYTES] for i in range(0, INSTANCE_BYTES, FRAGMENT_BYTES)
        ]

    def variants(self) -> dict[str, Callable[[int], int]]:
        return {
            "buffered": self.buffered,
            "streamed": lambda offset: self.streamed(offset, kick=False),
            "streamed + kick": lambda offset: self.streamed(offset, kick=True),
        }

    def __call__(self, name: str, store: Callable[[int], int]) -> float:
        offset, started = 0, time.perf_counter()
        for _ in range(self.count):
            offset = store(offset)
        return self.count * INSTANCE_BYTES / (time.perf_counter() - started) / 1e6

    def buffered(self, offset: int) -> int:
        spin(self.arrival_s)
        os.pwrite(self.descriptor, self.instance, offset)
        os.fdatasync(self.descriptor)
        return offset + INSTANCE_BYTES

    def streamed(self, offset: int, *, kick: bool) -> int:
        for fragment in self.fragments:
            spin(self.arrival_s / len(self.fragments))
            os.pwrite(self.descriptor, fragment, offset)
            if kick:
                self.libc.sync_file_range(
                    ctypes.c_int(self.descriptor),
                    ctypes.c_longlong(offset),
                    ctypes.c_longlong(len(fragment)),
                    ctypes.c_uint(SYNC_FILE_RANGE_WRITE),
                )
            offset += len(fragment)
        os.fdatasync(self.descriptor)
        return offset


def spin(seconds: float) -> None:
    """Busy-wait (as a receiving thread would be busy), more exact than sleep."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


if __name__ == "__main__":
    main()
