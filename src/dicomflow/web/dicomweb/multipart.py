"""``multipart/related`` bodies (RFC 2387): written part by part, read from a buffer.

Writing streams one part at a time, so a study is never held in memory whole.
Reading works on bytes or an ``mmap`` of the spooled upload and yields each
part's headers and the span of its content.
"""

import mmap
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dicomflow.errors import MultipartError

CRLF = b"\r\n"
Buffer = bytes | mmap.mmap


@dataclass(frozen=True)
class Part:
    """One part of a multipart body: its headers (names lower-cased) and content span."""

    headers: dict[str, str]
    start: int
    end: int

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


def new_boundary() -> str:
    return uuid.uuid4().hex


def content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    """Return the Content-Type of a multipart/related body of ``part_type`` parts."""
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return value if transfer_syntax is None else f"{value}; transfer-syntax={transfer_syntax}"


def encode(parts: Iterable[tuple[str, bytes]], boundary: str) -> Iterator[bytes]:
    """Yield a multipart body for ``(content type, content)`` pairs, one part at a time."""
    for part_type, content in parts:
        yield f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode("latin-1")
        yield content
        yield CRLF
    yield f"--{boundary}--\r\n".encode("latin-1")


def boundary_of(content_type_value: str) -> str | None:
    """Return the ``boundary`` parameter of a Content-Type value, if it has one."""
    for piece in content_type_value.split(";")[1:]:
        name, _, value = piece.partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"') or None
    return None


def split(data: Buffer, boundary: str) -> Iterator[Part]:
    """Yield the parts of the multipart body in ``data``.

    Raises:
        MultipartError: if no boundary delimiter is found, or the last part is cut short
            (the parts before it are yielded first).
    """
    delimiter = b"--" + boundary.encode("latin-1")
    position = _first_delimiter(data, delimiter)
    while True:
        position += len(delimiter)
        if data[position : position + 2] == b"--":
            return
        line_end = data.find(CRLF, position)
        if line_end < 0:
            raise MultipartError("The body ends after a boundary delimiter.")
        start = line_end + 2
        end = data.find(CRLF + delimiter, start)
        if end < 0:
            raise MultipartError("The last part has no closing boundary delimiter.")
        yield _part(data, start, end)
        position = end + 2


def _first_delimiter(data: Buffer, delimiter: bytes) -> int:
    if data[: len(delimiter)] == delimiter:
        return 0
    position = data.find(CRLF + delimiter)
    if position < 0:
        raise MultipartError("The body holds no boundary delimiter.")
    return position + 2


def _part(data: Buffer, start: int, end: int) -> Part:
    if data[start : start + 2] == CRLF:
        return Part({}, start + 2, end)
    header_end = data.find(CRLF + CRLF, start, end)
    if header_end < 0:
        return Part({}, start, end)
    headers: dict[str, str] = {}
    for line in data[start:header_end].decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Part(headers, header_end + 4, end)
