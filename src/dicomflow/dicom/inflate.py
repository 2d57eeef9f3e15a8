"""Inflating a Deflated Explicit VR Little Endian dataset in bounded steps.

A deflated stream expands up to ~1,000 times: a 1 MB instance may inflate to
1 GB. The dataset is inflated :data:`STEP_BYTES` at a time, each step counted
against ``maximum_bytes`` and offered to ``reserve`` (the receiver's memory
budget) before it is kept, so a bomb costs at most the limit plus one step.
"""

import zlib
from collections.abc import Callable

from dicomflow.errors import InstanceTooLargeError

STEP_BYTES = 1 << 20

Reserve = Callable[[int], bool]
Buffer = bytes | bytearray | memoryview


def unlimited(count: int) -> bool:
    """A memory budget that always has room."""
    return True


def inflate(data: Buffer, maximum_bytes: int, reserve: Reserve = unlimited) -> bytearray:
    """The raw-deflate stream ``data`` inflated, at most ``maximum_bytes`` long.

    Raises:
        InstanceTooLargeError: past ``maximum_bytes``, or when ``reserve`` refuses a step.
        zlib.error: if ``data`` is not a whole raw-deflate stream.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    output = bytearray()
    pending: Buffer = data
    while not inflater.eof:
        piece = inflater.decompress(pending, STEP_BYTES)
        pending = inflater.unconsumed_tail
        if not piece:
            break  # input exhausted (a stream cut short ends here too)
        _admit(len(output) + len(piece), maximum_bytes, len(piece), reserve)
        output += piece
    if not inflater.eof:
        raise zlib.error("The deflated dataset ends before its deflate stream does.")
    return output


def _admit(total: int, maximum_bytes: int, step: int, reserve: Reserve) -> None:
    if total > maximum_bytes:
        raise InstanceTooLargeError(
            f"The deflated dataset inflates to more than {maximum_bytes} bytes"
            " (maximum_instance_bytes).",
            "maximum_instance_bytes",
        )
    if not reserve(step):
        raise InstanceTooLargeError(
            "Inflating the deflated dataset would pass the memory limit for instances"
            " being received (maximum_held_bytes).",
            "maximum_held_bytes",
        )
