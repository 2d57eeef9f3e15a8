"""TLS with the BCP 195 profile (DICOM TLS, PS3.15 Annex B; HTTPS): the one place contexts are made.

The receiver (plain and TLS ports), the sender, the dashboard and DICOMweb all build
their :class:`ssl.SSLContext` here from one :class:`TLSFiles`, so every part speaks
TLS 1.2 or newer with the same cipher suites. A file that cannot be used is a
:class:`~dicomflow.errors.TLSConfigurationError` whose one-line message names the
setting and the file.

:func:`make_self_signed` writes a certificate and private key for tests and demos
(``dicomflow tls selfsigned DIR``).
"""

import datetime
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomflow.errors import TLSConfigurationError

# RFC 9325 (BCP 195) section 4.2: TLS 1.2 suites with forward secrecy and AEAD only.
# TLS 1.3 suites are OpenSSL's defaults, which are all AEAD.
BCP195_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
    ]
)
CERTIFICATE_FILE = "certificate.pem"
PRIVATE_KEY_FILE = "private-key.pem"


@dataclass(frozen=True)
class TLSFiles:
    """The PEM files of one side of a TLS connection.

    ``certificate``/``private_key``: our own identity (required to listen; optional to
    send, where it is our client certificate for mutual TLS). ``ca_certificates``: the
    certificates we trust for the peer (to send: the system's trust store if not given;
    to listen: peers must present a certificate signed by one of them).
    ``require_client_certificate``: listening, refuse a peer without a trusted
    certificate (mutual TLS); ``None`` means on exactly when ``ca_certificates`` is given.
    """

    certificate: Path | None = None
    private_key: Path | None = None
    ca_certificates: Path | None = None
    require_client_certificate: bool | None = None

    @property
    def mutual(self) -> bool:
        """Whether a listener with these files requires a trusted client certificate."""
        if self.require_client_certificate is None:
            return self.ca_certificates is not None
        return self.require_client_certificate


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """The context a listener wraps accepted connections in.

    Raises:
        TLSConfigurationError: a file is missing, unreadable or does not match.
    """
    if files.certificate is None or files.private_key is None:
        missing = "tls_certificate" if files.certificate is None else "tls_private_key"
        raise TLSConfigurationError(f"{missing} is not set; a TLS listener needs both.")
    if files.mutual and files.ca_certificates is None:
        raise TLSConfigurationError(
            "tls_require_client_certificate is on but tls_ca_certificates is not set: "
            "give the CA certificates that client certificates must be signed by."
        )
    context = _context(ssl.PROTOCOL_TLS_SERVER)
    _load_identity(context, files)
    if files.ca_certificates is not None:
        _load_trust(context, files.ca_certificates)
    context.verify_mode = ssl.CERT_REQUIRED if files.mutual else ssl.CERT_NONE
    return context


def client_context(
    files: TLSFiles | None = None, *, verify_hostname: bool = False
) -> ssl.SSLContext:
    """The context a sender wraps its connection in.

    The peer's certificate must be trusted (by ``ca_certificates``, or the system's
    store when not given). DICOM peers are usually named by IP address in hospital
    networks, so the host name is checked only with ``verify_hostname``.

    Raises:
        TLSConfigurationError: a file is missing, unreadable or does not match.
    """
    files = files or TLSFiles()
    context = _context(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = verify_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    if files.ca_certificates is not None:
        _load_trust(context, files.ca_certificates)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if files.certificate is not None or files.private_key is not None:
        _load_identity(context, files)
    return context


def _context(protocol: int) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def _load_identity(context: ssl.SSLContext, files: TLSFiles) -> None:
    if files.certificate is None or files.private_key is None:
        given, missing = (
            ("tls_certificate", "tls_private_key")
            if files.private_key is None
            else ("tls_private_key", "tls_certificate")
        )
        raise TLSConfigurationError(f"{given} is set but {missing} is not; give both.")
    _readable("tls_certificate", files.certificate)
    _readable("tls_private_key", files.private_key)
    try:
        context.load_cert_chain(files.certificate, files.private_key)
    except ssl.SSLError as exc:
        raise TLSConfigurationError(
            f'tls_certificate "{files.certificate}" and tls_private_key "{files.private_key}" '
            f"cannot be used together: {describe(exc)}."
        ) from exc


def _load_trust(context: ssl.SSLContext, path: Path) -> None:
    _readable("tls_ca_certificates", path)
    try:
        if path.is_dir():
            context.load_verify_locations(capath=str(path))
        else:
            context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise TLSConfigurationError(
            f'tls_ca_certificates "{path}" holds no usable PEM certificate: {describe(exc)}.'
        ) from exc


def _readable(setting: str, path: Path) -> None:
    try:
        if path.is_dir() and setting == "tls_ca_certificates":
            return
        with path.open("rb") as file:
            file.read(1)
    except OSError as exc:
        raise TLSConfigurationError(
            f'{setting} "{path}" cannot be read: {exc.strerror or exc}.'
        ) from exc


def describe(exc: BaseException) -> str:
    """One line saying why a handshake or a file failed (OpenSSL's reason, not its codes)."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    return str(exc) or type(exc).__name__


def handshake(
    context: ssl.SSLContext,
    connection: socket.socket,
    *,
    server_side: bool,
    timeout_s: float,
    server_hostname: str | None = None,
) -> ssl.SSLSocket:
    """Wrap ``connection`` and complete the TLS handshake within ``timeout_s``.

    Raises:
        ssl.SSLError, OSError, TimeoutError: the handshake failed (``describe`` says why);
        the connection is closed.
    """
    connection.settimeout(timeout_s)
    wrapped = context.wrap_socket(
        connection,
        server_side=server_side,
        do_handshake_on_connect=False,
        server_hostname=server_hostname,
    )
    try:
        wrapped.do_handshake()
    except BaseException:
        wrapped.close()  # it owns the connection now
        raise
    return wrapped


def peer_subject(connection: ssl.SSLSocket) -> str:
    """The common name of the peer's certificate, or ``""`` without one."""
    certificate = connection.getpeercert()
    if not certificate:
        return ""
    subject: Any = certificate.get("subject", ())
    for relative_name in subject:
        for key, value in relative_name:
            if key == "commonName":
                return str(value)
    return ""


@dataclass(frozen=True)
class SelfSigned:
    certificate: Path
    private_key: Path


def make_self_signed(
    directory: Path,
    *,
    common_name: str = "dicomflow",
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
    days: int = 825,
) -> SelfSigned:
    """Write a self-signed certificate and its private key (mode 0600) into ``directory``.

    The certificate names ``hosts`` (and this machine's name) as subject alternative
    names, can serve and be a client, and is its own CA: trust it by giving the
    certificate file as the peer's ``tls_ca_certificates``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys((*hosts, socket.gethostname())):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pair = SelfSigned(directory / CERTIFICATE_FILE, directory / PRIVATE_KEY_FILE)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(pair.private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key_bytes)
    os.chmod(pair.private_key, 0o600)
    pair.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return pair
