"""Accept header negotiation for DICOMweb (PS3.18 8.7).

A media range is ``type/subtype`` with parameters; for ``multipart/related`` the
``type`` parameter names the media type of the parts and ``transfer-syntax`` the
transfer syntax of their content (``*`` for any). No Accept header means ``*/*``.
"""

from dataclasses import dataclass, field

from fastapi import HTTPException, Request, status

MULTIPART = "multipart/related"
AS_STORED = "*"
OCTET_STREAM = "application/octet-stream"
#: The transfer syntax of instances and native frames when the request names none
#: (PS3.18 8.7.3.5.2, Table 8.7.3-2).
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
#: What stored instances can be converted to when asked: the uncompressed syntaxes
#: (compressed pixel data is decoded with pylibjpeg; big endian and deflate re-encoded).
CONVERTIBLE = frozenset({"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"})


@dataclass(frozen=True)
class FrameRepresentation:
    """How frames are served: the media type and transfer syntax of each part, and
    whether the stored frames are decoded to native pixels first."""

    media_type: str
    transfer_syntax: str
    decoded: bool = False

    @property
    def part_type(self) -> str:
        return f"{self.media_type}; transfer-syntax={self.transfer_syntax}"


@dataclass(frozen=True)
class MediaRange:
    """One element of an Accept header."""

    media_type: str
    parameters: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0

    def covers(self, media_type: str) -> bool:
        """Whether this range's ``type/subtype`` (with ``*`` wildcards) covers ``media_type``."""
        return _covers(self.media_type, media_type)


def parse_accept(header: str | None) -> list[MediaRange]:
    """Return the ranges of an Accept header, best first; ``*/*`` when there is none."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = [_parse_range(text) for text in _split(header, ",")]
    kept = [r for r in ranges if r is not None and r.quality > 0]
    return sorted(kept, key=lambda r: -r.quality)


def _parse_range(text: str) -> MediaRange | None:
    pieces = _split(text, ";")
    if not pieces or "/" not in pieces[0]:
        return None
    parameters: dict[str, str] = {}
    for piece in pieces[1:]:
        name, _, value = piece.partition("=")
        parameters[name.strip().lower()] = value.strip().strip('"')
    try:
        quality = float(parameters.pop("q", "1"))
    except ValueError:
        quality = 1.0
    return MediaRange(pieces[0].strip().lower(), parameters, quality)


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes."""
    pieces: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            pieces.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    pieces.append("".join(current).strip())
    return [piece for piece in pieces if piece]


def _covers(pattern: str, media_type: str) -> bool:
    kind, _, subtype = pattern.partition("/")
    other_kind, _, other_subtype = media_type.partition("/")
    return kind in ("*", other_kind) and subtype in ("*", "", other_subtype)


def accepts_single(request: Request, *media_types: str) -> str:
    """Return the first of ``media_types`` the request accepts as a single-part body.

    Raises:
        HTTPException: 406 naming what can be served.
    """
    return single_media_type(request.headers.get("accept"), *media_types)


def single_media_type(accept: str | None, *media_types: str) -> str:
    """Return the first of ``media_types`` the Accept value ``accept`` covers.

    Raises:
        HTTPException: 406 naming what can be served.
    """
    for media_range in parse_accept(accept):
        for media_type in media_types:
            if media_range.covers(media_type):
                return media_type
    raise not_acceptable(", ".join(media_types))


def accepts_multipart(
    request: Request, part_type: str, transfer_syntaxes: set[str], default_type: str
) -> bool:
    """Whether the request accepts ``multipart/related`` parts of ``part_type`` whose
    content is in every one of ``transfer_syntaxes``.

    A range without ``type`` means ``default_type``; without ``transfer-syntax`` any
    stored transfer syntax is served as it is.
    """
    for media_range in parse_accept(request.headers.get("accept")):
        if media_range.media_type in ("*/*", "multipart/*"):
            return True
        if _asks_parts(media_range, part_type, default_type) and _as_stored(
            media_range, transfer_syntaxes
        ):
            return True
    return False


def instance_syntax(request: Request, stored: set[str], single_type: str) -> tuple[str, bool]:
    """How to serve instances stored in ``stored`` transfer syntaxes: the syntax to send
    (:data:`AS_STORED`, or one of :data:`CONVERTIBLE` to convert to) and whether as one
    ``single_type`` body instead of multipart.

    A range without ``transfer-syntax`` (``*/*`` included) asks for Explicit VR Little
    Endian; ``transfer-syntax=*`` for the stored bytes.

    Raises:
        HTTPException: 406 when no range of the Accept header can be served.
    """
    for media_range in parse_accept(request.headers.get("accept")):
        if media_range.media_type in ("*/*", "multipart/*"):
            return _converted_unless_stored(EXPLICIT_LITTLE, stored), False
        single = media_range.media_type == single_type
        if not (single or _asks_parts(media_range, single_type, single_type)):
            continue
        syntax = media_range.parameters.get("transfer-syntax", EXPLICIT_LITTLE)
        if syntax == AS_STORED or {syntax} >= stored:
            return AS_STORED, single
        if syntax in CONVERTIBLE:
            return syntax, single
    raise not_acceptable(
        f'multipart/related; type="{single_type}" with transfer-syntax=* (as stored) or'
        f" {' or '.join(sorted(CONVERTIBLE))}"
    )


def _converted_unless_stored(syntax: str, stored: set[str]) -> str:
    return AS_STORED if {syntax} >= stored else syntax


def frame_representation(
    request: Request, stored_type: str, stored_syntax: str
) -> FrameRepresentation:
    """How to serve frames stored as ``stored_type`` content in ``stored_syntax`` (native
    frames: ``application/octet-stream`` in Explicit VR Little Endian).

    ``transfer-syntax=*`` gets the frames as stored, labelled with the asked part type
    (cornerstone asks ``type=application/octet-stream; transfer-syntax=*`` and reads the
    syntax from each part); ``application/octet-stream`` without a syntax gets native
    pixels, compressed frames decoded.

    Raises:
        HTTPException: 406 when no range of the Accept header can be served.
    """
    as_stored = FrameRepresentation(stored_type, stored_syntax)
    for media_range in parse_accept(request.headers.get("accept")):
        if media_range.media_type in ("*/*", "multipart/*"):
            return as_stored
        if media_range.media_type != MULTIPART:
            continue
        chosen = _frame_choice(media_range, as_stored)
        if chosen is not None:
            return chosen
    raise not_acceptable(
        f'multipart/related; type="{stored_type}", or type="{OCTET_STREAM}" with'
        f" transfer-syntax=* (as stored) or {EXPLICIT_LITTLE} (decoded)"
    )


def _frame_choice(
    media_range: MediaRange, as_stored: FrameRepresentation
) -> FrameRepresentation | None:
    wanted = media_range.parameters.get("type", OCTET_STREAM).lower()
    syntax = media_range.parameters.get("transfer-syntax")
    if _covers(wanted, as_stored.media_type) and syntax in (
        None,
        AS_STORED,
        as_stored.transfer_syntax,
    ):
        return as_stored
    if wanted != OCTET_STREAM:
        return None
    if syntax in (AS_STORED, as_stored.transfer_syntax):
        return FrameRepresentation(OCTET_STREAM, as_stored.transfer_syntax)
    if syntax in (None, EXPLICIT_LITTLE):
        return FrameRepresentation(OCTET_STREAM, EXPLICIT_LITTLE, decoded=True)
    return None


def _asks_parts(media_range: MediaRange, part_type: str, default_type: str) -> bool:
    """Whether ``media_range`` is ``multipart/related`` with parts of ``part_type`` (a
    range without ``type`` means ``default_type``)."""
    wanted = media_range.parameters.get("type", default_type).lower()
    return media_range.media_type == MULTIPART and _covers(wanted, part_type)


def _as_stored(media_range: MediaRange, stored: set[str]) -> bool:
    """Whether content in every one of the ``stored`` transfer syntaxes satisfies the
    range's ``transfer-syntax`` (none or ``*``: any)."""
    syntax = media_range.parameters.get("transfer-syntax", AS_STORED)
    return syntax == AS_STORED or {syntax} >= stored


def not_acceptable(offered: str) -> HTTPException:
    return HTTPException(
        status.HTTP_406_NOT_ACCEPTABLE,
        f"None of the media types in the Accept header can be served; this resource is "
        f"available as {offered}.",
    )
