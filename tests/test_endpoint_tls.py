"""The ``?tls`` suffix of endpoints, the ``tls`` flag of addresses and of a destination on
disk (an older ``destination.json`` without it is plain)."""

import json
import re

import pytest

from dicomflow.address import Address
from dicomflow.destinations import DicomDestination, OutboxDestination
from dicomflow.settings import NodeSettings, format_endpoint, parse_endpoint


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("PACS@10.0.0.5:2762?tls", Address("10.0.0.5", 2762, "PACS", tls=True)),
        ("PACS@10.0.0.5:104", Address("10.0.0.5", 104, "PACS")),
        ("A?B@host:104", Address("host", 104, "A?B")),  # "?" is allowed in an AE title
        ("A?B@host:104?tls", Address("host", 104, "A?B", tls=True)),
    ],
)
def test_endpoint_text_round_trips(text: str, address: Address):
    assert parse_endpoint(text) == address
    assert format_endpoint(address) == text


@pytest.mark.parametrize(
    "text",
    [
        "PACS@h:104?TLS",
        "PACS@h:104?",
        "PACS@h:104?tls=1",
        "PACS@h:104?tls?tls",
        "PACS@h:104?ssl",
        "PACS@h:104?tls\n",
        "PACS@h:104?tls\x00",
        "PACS@h?tls:104",
        "PACS@h:104?" + "x" * 10_000,
    ],
)
def test_anything_else_after_the_question_mark_is_a_one_line_error(text: str):
    with pytest.raises(ValueError) as caught:
        parse_endpoint(text)
    message = str(caught.value)
    assert "\n" not in message and "\x00" not in message
    assert len(message) < 700
    assert message.startswith('endpoint "PACS@h')
    assert 'only "?tls"' in message


def test_the_settings_take_tls_endpoints():
    settings = NodeSettings(endpoints=["PACS@10.0.0.5:2762?tls", "OTHER@10.0.0.6:104"])
    assert [a.tls for a in settings.endpoint_addresses()] == [True, False]
    with pytest.raises(ValueError, match=re.escape('endpoint "PACS@10.0.0.5:2762?tsl"')):
        NodeSettings(endpoints=["PACS@10.0.0.5:2762?tsl"])


def test_an_address_takes_tls_only_by_keyword():
    address = Address("10.0.0.5", 104, "PACS")
    assert not address.tls and str(address) == "PACS@10.0.0.5:104"
    with pytest.raises(TypeError):
        Address("10.0.0.5", 104, "PACS", True)  # type: ignore[misc]
    with pytest.raises(ValueError, match="tls"):
        Address("10.0.0.5", 104, "PACS", tls="yes").validate()  # type: ignore[arg-type]


def test_a_destination_keeps_its_tls_flag_on_disk():
    item = OutboxDestination(DicomDestination("10.0.0.5", 2762, "PACS", tls=True), 1.0)
    data = json.loads(json.dumps(item.to_json()))
    assert data["tls"] is True
    again = OutboxDestination.from_json(data)
    assert again == item and again.destination.describe() == "PACS@10.0.0.5:2762?tls"
    plain = DicomDestination("10.0.0.5", 2762, "PACS")
    assert plain.lane() != item.destination.lane(), "plain and TLS items use separate lanes"
    assert "tls" not in plain.to_json()


def test_an_older_destination_without_the_flag_is_plain():
    older = {"kind": "dicom", "ip": "10.0.0.5", "port": 104, "ae_title": "PACS", "processed_at": 1}
    destination = OutboxDestination.from_json(older).destination
    assert isinstance(destination, DicomDestination) and destination.tls is False
    with pytest.raises(ValueError, match="tls"):
        OutboxDestination.from_json(older | {"tls": "yes"})
