"""Node settings: explicit values, then DICOMFLOW_* variables, then a TOML file."""

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from dicomflow.address import Address
from dicomflow.errors import SettingsFileError
from dicomflow.node import AbstractPipeline
from dicomflow.node.pipeline import pipeline_settings
from dicomflow.settings import build_settings, format_endpoint, parse_endpoint


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DICOMFLOW_"):
            monkeypatch.delenv(name)


class Unconfigured(AbstractPipeline):
    """Leaves every setting to the environment."""


class OnPort4242(AbstractPipeline):
    port = 4242


def test_environment_gives_what_is_not_given_explicitly(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DICOMFLOW_PORT", "11112")
    monkeypatch.setenv("DICOMFLOW_AE_TITLE", "FROM-ENV")
    assert build_settings().port == 11112
    assert build_settings(port=None).port == 11112
    assert build_settings(port=5000).port == 5000
    assert build_settings().ae_title == "FROM-ENV"
    assert pipeline_settings(Unconfigured).port == 11112
    assert pipeline_settings(OnPort4242).port == 4242, "a class attribute is explicit"
    assert pipeline_settings(OnPort4242, port=0).port == 0


def test_defaults_without_environment():
    settings = build_settings()
    assert (settings.port, settings.ae_title, settings.ip) == (104, "DICOMFLOW", "127.0.0.1")
    assert settings.endpoints == []
    assert settings.spool_journal_segment_bytes == 256 * 1024 * 1024


def test_toml_file_comes_after_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "dicomflow.toml"
    config.write_text('port = 7000\nae_title = "FROM-TOML"\nendpoints = ["PACS@10.0.0.1:104"]\n')
    monkeypatch.setenv("DICOMFLOW_CONFIG", str(config))
    monkeypatch.setenv("DICOMFLOW_PORT", "7001")
    settings = build_settings()
    assert (settings.port, settings.ae_title) == (7001, "FROM-TOML")
    assert settings.endpoint_addresses() == [Address("10.0.0.1", 104, "PACS")]


@pytest.mark.parametrize(
    ("values", "field", "text"),
    [
        ({"port": 70000}, "port", "less than or equal to 65535"),
        ({"port": -1}, "port", "greater than or equal to 0"),
        ({"port": "eleven"}, "port", "integer"),
        ({"workers": 0}, "workers", "greater than or equal to 1"),
        ({"processing_timeout_s": 0}, "processing_timeout_s", "greater than 0"),
        ({"ae_title": "A-VERY-LONG-AE-TITLE"}, "ae_title", '"A-VERY-LONG-AE-TITLE"'),
        ({"ae_title": "BAD\\AE"}, "ae_title", "not a valid AE title"),
        ({"endpoints": ["PACS@nowhere"]}, "endpoints", '"PACS@nowhere" must look like'),
        ({"allowed_ae_titles": [""]}, "allowed_ae_titles", "not a valid AE title"),
        ({"allowed_ips": ["10.0.0.300"]}, "allowed_ips", "10.0.0.300"),
        ({"log_dir": "x"}, "log_dir", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_value_names_the_field(values: dict[str, object], field: str, text: str):
    with pytest.raises(ValidationError) as caught:
        build_settings(**values)
    error = caught.value.errors()[0]
    assert error["loc"][0] == field
    assert text in str(caught.value)


def test_a_bad_environment_value_names_the_field(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DICOMFLOW_PORT", "abc")
    with pytest.raises(ValidationError) as caught:
        build_settings()
    assert caught.value.errors()[0]["loc"] == ("port",)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("PACS@127.0.0.1:104", Address("127.0.0.1", 104, "PACS")),
        ("ORTHANC@pacs.example.org:4242", Address("pacs.example.org", 4242, "ORTHANC")),
        ("MY AE@10.1.2.3:1", Address("10.1.2.3", 1, "MY AE")),
    ],
)
def test_endpoint_strings_are_parsed(text: str, address: Address):
    assert parse_endpoint(text) == address
    assert parse_endpoint(format_endpoint(address)) == address


MALFORMED = [
    "",
    "PACS",
    "PACS@host",
    "PACS@host:",
    "PACS@:104",
    "PACS@host:port",
    "PACS@h:-1",
    "host:104",
    "@host:104",
    "127.0.0.1:11112",
]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        *[
            (text, f'endpoint "{text}" must look like AE_TITLE@host:port (e.g. PACS@10.0.0.5:104)')
            for text in MALFORMED
        ],
        ("PACS@host:70000", 'port "70000" is not a port number'),
        ("SEVENTEEN-CHARS-AE@host:104", 'AE title "SEVENTEEN-CHARS-AE" must be 1-16'),
    ],
)
def test_bad_endpoint_strings_are_refused(text: str, message: str):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_endpoint(text)


def test_endpoints_from_settings_become_addresses():
    settings = build_settings(endpoints=["PACS@127.0.0.1:104", "ANY-SCP@10.0.0.2:11112"])
    assert settings.endpoint_addresses() == [
        Address("127.0.0.1", 104, "PACS"),
        Address("10.0.0.2", 11112, "ANY-SCP"),
    ]


def test_relative_paths_are_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    settings = build_settings(
        services_directory="services",
        log_path="logs/node.log",
        archive_datastore="archive",
        queue_url="sqlite://queue/jobs.db?poll_s=0.1",
    )
    assert settings.data_directory == tmp_path / "dicomflow-data"
    assert settings.services_directory == tmp_path / "services"
    assert settings.log_path == tmp_path / "logs" / "node.log"
    assert settings.archive_datastore == str(tmp_path / "archive")
    assert settings.queue_url == f"sqlite://{tmp_path}/queue/jobs.db?poll_s=0.1"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("archive_datastore", "s3://bucket/archive"),
        ("archive_datastore", "simplecache::s3://bucket"),
        ("queue_url", "sqlite:////srv/jobs.db"),
        ("queue_url", "redis://127.0.0.1:6379/0"),
    ],
)
def test_urls_are_kept_as_given(field: str, value: str):
    assert getattr(build_settings(**{field: value}), field) == value


def test_a_list_from_the_environment_must_be_json(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DICOMFLOW_ENDPOINTS", '["PACS@10.0.0.1:104"]')
    assert build_settings().endpoint_addresses() == [Address("10.0.0.1", 104, "PACS")]
    monkeypatch.setenv("DICOMFLOW_ENDPOINTS", "PACS@10.0.0.1:104")
    with pytest.raises(ValidationError, match=re.escape('like ["PACS@10.0.0.5:104"]')):
        build_settings()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, 'Settings file "{path}" (DICOMFLOW_CONFIG) does not exist.'),
        ("port = \n", 'Settings file "{path}" cannot be read as TOML: Invalid value (at line 1'),
        (b"port = '\xff'\n", 'Settings file "{path}" cannot be read as TOML'),
    ],
)
def test_a_missing_or_broken_settings_file_is_named(
    content: str | bytes | None, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "dicomflow.toml"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    monkeypatch.setenv("DICOMFLOW_CONFIG", str(path))
    with pytest.raises(SettingsFileError, match=re.escape(message.format(path=path))):
        build_settings()
