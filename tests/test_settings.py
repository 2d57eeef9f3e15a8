"""Node settings: explicit values, then DICOMFLOW_* variables, then a TOML file."""

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from dicomflow.net.address import Address
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
