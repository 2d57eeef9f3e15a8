"""The address of a DICOM application entity."""

from dataclasses import dataclass, field

AE_TITLE_MAX_LENGTH = 16


@dataclass(frozen=True)
class Address:
    """Where a DICOM peer listens: ``Address(ip="127.0.0.1", port=104, ae_title="PACS")``;
    ``tls=True``: the peer speaks DICOM TLS (PS3.15 Annex B) there; ``deidentify=True``: what
    the node sends there is de-identified first (the node's ``deid_*`` settings)."""

    ip: str
    port: int
    ae_title: str = "ANY-SCP"
    tls: bool = field(default=False, kw_only=True)
    deidentify: bool = field(default=False, kw_only=True)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field if this address cannot be used.

        Construction does not validate, so placeholder addresses in a class body
        (``Address(ip="", port=104, ae_title="")``) fail with this message when the
        pipeline is checked, not at import.
        """
        if not isinstance(self.ip, str) or not self.ip.strip():
            raise ValueError(f'Address ip "{self.ip}" is empty; give a host name or IP address.')
        if not isinstance(self.port, int) or not 0 < self.port <= 65535:
            raise ValueError(f'Address port "{self.port}" is not a port number (1-65535).')
        if not isinstance(self.tls, bool):
            raise ValueError(f'Address tls "{self.tls}" must be True or False.')
        if not isinstance(self.deidentify, bool):
            raise ValueError(f'Address deidentify "{self.deidentify}" must be True or False.')
        if not valid_ae_title(self.ae_title):
            raise ValueError(
                f'Address AE title "{self.ae_title}" must be 1-16 printable ASCII characters '
                "without backslash."
            )

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.ip}:{self.port}"


def valid_ae_title(title: object) -> bool:
    """Tell whether ``title`` is a valid AE title (PS3.5: 1-16 chars, no ``\\``)."""
    if not isinstance(title, str):
        return False
    stripped = title.strip()
    return (
        0 < len(stripped) <= AE_TITLE_MAX_LENGTH
        and stripped.isascii()
        and stripped.isprintable()
        and "\\" not in stripped
    )
