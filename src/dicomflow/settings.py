"""Process settings for a dicomflow node: one typed object built at the edge.

Values come, in order of priority, from explicit arguments (the pipeline's
class attributes and the command line), then ``DICOMFLOW_*`` environment
variables, then an optional TOML file named by ``DICOMFLOW_CONFIG``.

Relative paths (data directory, log file, services folder, a local archive or
SQLite queue) are made absolute against the working directory when the settings
are built: jobs run in working directories of their own.
"""

import ipaddress
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from dicomflow.address import Address, valid_ae_title
from dicomflow.errors import SettingsFileError
from dicomflow.tls import TLSFiles

ENV_PREFIX = "DICOMFLOW_"
CONFIG_VARIABLE = "DICOMFLOW_CONFIG"  # names the optional TOML settings file
ENDPOINT_FORM = "AE_TITLE@host:port (e.g. PACS@10.0.0.5:104)"
TLS_SUFFIX = "tls"
DEID_SUFFIX = "deid"
ENDPOINT_FLAGS = (TLS_SUFFIX, DEID_SUFFIX)
SQLITE_SCHEME = "sqlite://"
LIST_EXAMPLES = {
    "endpoints": '["PACS@10.0.0.5:104"]',
    "allowed_ae_titles": '["CT1", "PACS"]',
    "allowed_ips": '["10.0.0.0/8"]',
    "move_destinations": '["VIEWER@10.0.0.7:11112"]',
    "deid_options": '["retain_longitudinal_modified_dates", "clean_descriptors"]',
    "deid_safe_private": '["SIEMENS MR HEADER,0019,0C"]',
    "deid_pixel_cleaning": '["deid"]',
}

SPOOL_JOURNAL_MAX_BYTES = 1024 * 1024  # instances up to this size go through the journal
SPOOL_JOURNAL_SEGMENT_BYTES = 256 * 1024 * 1024  # what can wait there for a checkpoint
JOB_OUTPUT_LIMIT_BYTES = 16 * 1024 * 1024  # head and tail of a job's output kept in its log
AUDIT_LOG_MAX_BYTES = 10 * 1024 * 1024  # the audit log is rotated past this size


class NodeSettings(BaseSettings):
    """How a node listens, stores, processes and exports."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    ip: str = "127.0.0.1"
    port: int = Field(104, ge=0, le=65535)
    ae_title: str = "DICOMFLOW"
    data_directory: Path = Path("dicomflow-data")
    log_path: Path | None = None
    log_level: str = "INFO"
    # Endpoints (AE@host:port, ?tls: over DICOM TLS, ?deid: sent de-identified, ?tls&deid).
    endpoints: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Where C-MOVE may send (AE@host:port[?tls]), besides the plain endpoints, by AE title.
    move_destinations: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_ae_titles: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # User identities (PS3.7 D.3.3.7) checked against a TOML file of users (format in
    # dicomflow.net.user_identity); without one, identities are accepted and recorded.
    user_identities_file: Path | None = None
    require_user_identity: bool = False  # reject associations without a valid identity
    quiet_period_s: float | None = Field(None, ge=0)
    processing_timeout_s: float = Field(3600.0, gt=0)
    workers: int = Field(1, ge=1, le=64)
    export_retries: int = Field(5, ge=0)
    export_backoff_s: float = Field(2.0, ge=0)
    outbox_retry_interval_s: float = Field(60.0, gt=0)
    fsync: bool = True
    spool_journal_max_bytes: int = Field(SPOOL_JOURNAL_MAX_BYTES, ge=0, le=16 * 1024 * 1024)
    spool_journal_segment_bytes: int = Field(
        SPOOL_JOURNAL_SEGMENT_BYTES, ge=4 * 1024 * 1024, le=64 * 1024 * 1024 * 1024
    )
    receiver: Literal["lean", "pynetdicom"] = "lean"
    # DICOM TLS (PS3.15 Annex B). With a certificate and key the node's `port` speaks
    # TLS; with `tls_port` too, `port` stays plain and `tls_port` speaks TLS.
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None
    tls_ca_certificates: Path | None = None
    tls_require_client_certificate: bool | None = None  # None: on when a CA is given
    tls_port: int | None = Field(None, ge=0, le=65535)
    require_called_ae_title: bool = True
    maximum_associations: int = Field(64, ge=1, le=4096)
    association_request_timeout_s: float = Field(10.0, gt=0)
    association_idle_timeout_s: float = Field(60.0, gt=0)
    maximum_instance_bytes: int = Field(4 << 30, ge=1 << 20)
    maximum_held_bytes: int | None = Field(None, ge=1 << 20)
    keep_inputs: bool = False
    queue_url: str | None = None
    job_retention_days: float = Field(7.0, gt=0)
    queue_workers: int | None = Field(None, ge=0, le=64)
    job_memory_limit_bytes: int | None = Field(None, ge=0)
    job_output_limit_bytes: int = Field(JOB_OUTPUT_LIMIT_BYTES, ge=0)
    job_write_protection: bool = True
    services_directory: Path | None = None
    series_quiet_period_s: float = Field(5.0, gt=0)
    archive_datastore: str | None = None
    # The archive's catalog (dicomflow.cod.catalog): a SQLite file path or sqlite:///path,
    # or postgresql://… (needed when workers on other machines archive); by default
    # catalog.sqlite at the root of a local datastore, else in the data directory.
    catalog: str | None = None
    # De-identification (dicomflow.dicom.deid): the PS3.15 profile and its options by name,
    # the HMAC key file (0600; by default {data_directory}/deid/key, made on first use), an
    # optional administrator-only re-identification table, the safe private attributes
    # (CREATOR,GGGG,EE, with retain_safe_private) and pixel-cleaning rules for burned-in
    # annotation (deid recipe files with %filter sections, or "deid" for the library's).
    deid_profile: str = "basic"
    deid_options: Annotated[list[str], NoDecode] = Field(default_factory=list)
    deid_key_file: Path | None = None
    deid_reidentification_table: Path | None = None
    deid_safe_private: Annotated[list[str], NoDecode] = Field(default_factory=list)
    deid_pixel_cleaning: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The archive keeps de-identified instances only (names, metadata, thumbnails, catalog).
    archive_deid: bool = False
    web_enabled: bool = True
    web_ip: str = "127.0.0.1"
    web_port: int = Field(8080, ge=0, le=65535)
    web_token: SecretStr | None = None
    web_user: str | None = None
    web_password: SecretStr | None = None
    web_trusted_proxies: list[str] = Field(default_factory=list)
    web_session_hours: float = Field(12.0, gt=0)
    show_patient_identifiers: bool = False
    # HTTPS for the dashboard and DICOMweb: None = exactly when tls_certificate is set;
    # False serves plain HTTP (behind a TLS-terminating proxy); True requires a certificate.
    web_tls: bool | None = None
    # The audit trail (dicomflow.audit): one JSON line per association and web request.
    audit_log_path: Path | None = None  # default: {data_directory}/audit/audit.jsonl
    audit_log_max_bytes: int = Field(AUDIT_LOG_MAX_BYTES, ge=1024)
    audit_log_backups: int = Field(10, ge=1, le=1000)

    def tls_files(self) -> TLSFiles:
        """The node's own TLS files (to listen, and its client identity to send)."""
        return TLSFiles(
            certificate=self.tls_certificate,
            private_key=self.tls_private_key,
            ca_certificates=self.tls_ca_certificates,
            require_client_certificate=self.tls_require_client_certificate,
        )

    @property
    def tls_enabled(self) -> bool:
        """Whether the node has a certificate to speak TLS with."""
        return self.tls_certificate is not None

    @property
    def web_https(self) -> bool:
        """Whether the dashboard and DICOMweb are served over HTTPS (``web_tls``, by
        default exactly when the node has a certificate)."""
        return self.tls_enabled if self.web_tls is None else self.web_tls

    def audit_log_file(self) -> Path:
        """Where the audit trail is written."""
        if self.audit_log_path is not None:
            return self.audit_log_path
        return self.data_directory.resolve() / "audit" / "audit.jsonl"

    def catalog_location(self) -> str | None:
        """Where the archive's catalog is (None without an archive): ``catalog``, by default
        ``catalog.sqlite`` beside ``studies/`` in a local datastore, else in the data
        directory."""
        if self.catalog:
            return self.catalog
        datastore = self.archive_datastore
        if datastore is None:
            return None
        local = datastore.removeprefix("file://")
        folder = Path(local) if "://" not in local else self.data_directory.resolve()
        return str(folder / "catalog.sqlite")

    def resolved_queue_url(self) -> str:
        """The queue URL; by default an embedded SQLite queue in the data directory."""
        if self.queue_url:
            return self.queue_url
        data = self.data_directory.resolve()
        options = urlencode(
            {
                "poll_s": 0.01,
                "log_dir": str(self.job_log_directory()),
                "result_ttl_s": self.job_retention_days * 86400.0,
            }
        )
        return f"sqlite:///{data / 'queue.db'}?{options}"

    def job_options(self) -> dict[str, int]:
        """The queue options of the node's own workers that come from these settings."""
        options = {"output_limit_bytes": self.job_output_limit_bytes}
        if self.job_memory_limit_bytes is not None:
            options["memory_limit_bytes"] = self.job_memory_limit_bytes
        return options

    def deid_key_path(self) -> Path:
        """The de-identification key file: ``deid_key_file``, by default in the data
        directory."""
        if self.deid_key_file is not None:
            return self.deid_key_file
        return self.data_directory.resolve() / "deid" / "key"

    def job_log_directory(self) -> Path:
        """Where the default embedded queue keeps every job's full output."""
        return self.data_directory.resolve() / "logs" / "jobs"

    def local_workers(self) -> int:
        """Worker processes the node starts: ``queue_workers``, by default ``workers`` for
        the embedded queue and none for Redis (run ``dicomflow worker`` there)."""
        if self.queue_workers is not None:
            return self.queue_workers
        return self.workers if self.resolved_queue_url().startswith("sqlite") else 0

    @field_validator(
        "data_directory",
        "log_path",
        "services_directory",
        "user_identities_file",
        "audit_log_path",
        "deid_key_file",
        "deid_reidentification_table",
    )
    @classmethod
    def _absolute_path(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @field_validator("archive_datastore")
    @classmethod
    def _absolute_datastore(cls, value: str | None) -> str | None:
        return None if value is None else absolute_datastore(value)

    @field_validator("queue_url")
    @classmethod
    def _absolute_queue_url(cls, value: str | None) -> str | None:
        return None if value is None else absolute_queue_url(value)

    @field_validator(*LIST_EXAMPLES, mode="before")
    @classmethod
    def _json_list(cls, value: Any, info: ValidationInfo) -> Any:
        """An environment variable gives a list as JSON text."""
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            example = LIST_EXAMPLES[str(info.field_name)]
            raise ValueError(f"a list must be given as JSON, like {example}") from None

    @field_validator("ae_title")
    @classmethod
    def _check_ae_title(cls, value: str) -> str:
        if not valid_ae_title(value):
            raise ValueError(f'"{value}" is not a valid AE title (1-16 printable ASCII characters)')
        return value.strip()

    @field_validator("allowed_ae_titles")
    @classmethod
    def _check_allowed_ae_titles(cls, value: list[str]) -> list[str]:
        for title in value:
            if not valid_ae_title(title):
                raise ValueError(f'"{title}" is not a valid AE title')
        return value

    @field_validator("allowed_ips", "web_trusted_proxies")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for text in value:
            ipaddress.ip_network(text, strict=False)
        return value

    @field_validator("endpoints", "move_destinations")
    @classmethod
    def _check_endpoints(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for text in value:
            address = parse_endpoint(text)
            if address.deidentify and info.field_name == "move_destinations":
                raise ValueError(
                    f'move destination "{_shown(text)}": C-MOVE sends the archive\'s instances'
                    f' as they are; "?{DEID_SUFFIX}" is for endpoints only'
                )
        return value

    def endpoint_addresses(self) -> list[Address]:
        """The endpoints as addresses."""
        return [parse_endpoint(text) for text in self.endpoints]

    def move_destination_addresses(self) -> list[Address]:
        """Where a C-MOVE may send: ``move_destinations``, then the endpoints that are not
        ``?deid`` (a C-MOVE sends instances as they are)."""
        addresses = [parse_endpoint(text) for text in [*self.move_destinations, *self.endpoints]]
        return [address for address in addresses if not address.deidentify]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_VARIABLE)
        if config_file:
            sources.append(_toml_source(settings_cls, Path(config_file)))
        return tuple(sources)


def _toml_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    """The settings file, or an error naming it if it is missing or not TOML."""
    if not path.is_file():
        raise SettingsFileError(f'Settings file "{path}" ({CONFIG_VARIABLE}) does not exist.')
    try:
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise SettingsFileError(f'Settings file "{path}" cannot be read as TOML: {exc}.') from None


def settings_file() -> Path | None:
    """The TOML settings file named by ``DICOMFLOW_CONFIG``, if any."""
    name = os.environ.get(CONFIG_VARIABLE)
    return Path(name) if name else None


def absolute_datastore(datastore: str) -> str:
    """A local archive folder as an absolute path; URLs (``s3://``, ``a::b``) unchanged."""
    if "://" in datastore or "::" in datastore:
        return datastore
    return str(Path(datastore).expanduser().absolute())


def absolute_queue_url(url: str) -> str:
    """``sqlite://relative/jobs.db`` as ``sqlite:///abs/relative/jobs.db``; others unchanged."""
    rest = url.removeprefix(SQLITE_SCHEME)
    if rest == url or rest.startswith("/") or not rest:
        return url
    path, separator, query = rest.partition("?")
    return f"{SQLITE_SCHEME}{Path(path).expanduser().absolute()}{separator}{query}"


def build_settings(**values: Any) -> NodeSettings:
    """Build settings from explicit values, leaving out the ones that are ``None``."""
    return NodeSettings(**{key: value for key, value in values.items() if value is not None})


def parse_endpoint(text: str) -> Address:
    """Parse ``AE@host:port`` into an :class:`Address`: the AE title, the host and the port
    are all required (a peer's AE title is never guessed). Flags may follow the port:
    ``?tls`` (the peer speaks DICOM TLS), ``?deid`` (what is sent there is de-identified
    first), or both, ``?tls&deid``."""
    title, _, location = text.rpartition("@")
    location, question, suffix = location.partition("?")
    flags = _endpoint_flags(text, suffix) if question else set()
    host, _, port = location.rpartition(":")
    if not title or not host or not port.isdigit():
        raise ValueError(f'endpoint "{_shown(text)}" must look like {ENDPOINT_FORM}')
    address = Address(
        host, int(port), title, tls=TLS_SUFFIX in flags, deidentify=DEID_SUFFIX in flags
    )
    address.validate()
    return address


def _endpoint_flags(text: str, suffix: str) -> set[str]:
    """The flags after ``?`` (``tls``, ``deid``, joined by ``&``); raises naming a bad one."""
    flags = suffix.split("&")
    for flag in flags:
        if flag not in ENDPOINT_FLAGS:
            raise ValueError(
                f'endpoint "{_shown(text)}": only "?{TLS_SUFFIX}" (the peer speaks DICOM TLS)'
                f' and "?{DEID_SUFFIX}" (sent de-identified), or "?{TLS_SUFFIX}&{DEID_SUFFIX}",'
                f' may follow the port, not "?{_shown(suffix)}"'
            )
    if len(set(flags)) != len(flags):
        raise ValueError(f'endpoint "{_shown(text)}": a flag is given twice')
    return set(flags)


def _shown(text: str, limit: int = 200) -> str:
    """``text`` for a one-line message: control characters escaped, at most ``limit``."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def format_endpoint(address: Address) -> str:
    """The ``AE@host:port`` form of an address, with its flags (``?tls``, ``?deid``,
    ``?tls&deid``)."""
    text = f"{address.ae_title}@{address.ip}:{address.port}"
    chosen = ((TLS_SUFFIX, address.tls), (DEID_SUFFIX, address.deidentify))
    flags = [name for name, on in chosen if on]
    return f"{text}?{'&'.join(flags)}" if flags else text
