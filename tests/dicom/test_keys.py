"""Safe on-disk keys: no DICOM value ever becomes part of a path unchecked."""

import re

import pytest

from dicomflow.dicom.keys import (
    KEY_LENGTH,
    InvalidKeyError,
    instance_file_name,
    is_key,
    is_valid_uid,
    uid_key,
    value_key,
)

HOSTILE_VALUES = [
    "../x",
    "/etc/passwd",
    "..\\..\\windows",
    "",
    " ",
    "a\x00b",
    "\x00missing",
    "x" * 65_536,
    "Müller^Jürgen",
    "\udc80",  # a lone surrogate, as from a badly decoded value
    "PID/../../spool",
    123,
    1.5,
    b"\xff\xfe",
    ["A", "B"],
]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=repr)
def test_value_key_is_fixed_length_hex(value: object):
    key = value_key(value)
    assert len(key) == KEY_LENGTH
    assert is_key(key)
    assert set(key) <= set("0123456789abcdef")


def test_value_key_is_stable_and_distinct():
    keys = [value_key(value) for value in HOSTILE_VALUES]
    assert keys == [value_key(value) for value in HOSTILE_VALUES]
    assert len(set(keys)) == len(keys)


def test_missing_and_empty_values_are_different_patients():
    assert value_key(None) != value_key("")
    assert value_key(None) == value_key(None)
    assert is_key(value_key(None))


@pytest.mark.parametrize("value", ["\x00missing", "None", "none", "\x00"])
def test_no_value_collides_with_a_missing_one(value: str):
    assert value_key(value) != value_key(None)


@pytest.mark.parametrize(
    "uid", ["1.2.840.10008.1", "1.2.03", "0", "1.2.840.10008.5.1.4.1.1.2", "1." + "2" * 62]
)
def test_instance_file_name_accepts_uids(uid: str):
    assert instance_file_name(uid) == f"{uid}.dcm"


NOT_UIDS = ["../x", "", "1..2", "1." + "2" * 63, "1.2\x00", "\x00", "1.2.", ".1.2", "1.2/3"]


@pytest.mark.parametrize("uid", [*NOT_UIDS, "1.2 ", "\uff11.2", None, 12], ids=repr)
def test_instance_file_name_rejects_what_is_not_a_uid(uid: object):
    with pytest.raises(InvalidKeyError, match=r"SOPInstanceUID .* is not a valid DICOM UID"):
        instance_file_name(uid)


def test_strict_uid_grammar_refuses_leading_zeros():
    assert is_valid_uid("1.2.3")
    assert not is_valid_uid("1.2.03")
    assert uid_key("1.2.3") == "1.2.3"
    with pytest.raises(InvalidKeyError, match=re.escape('StudyInstanceUID "1.2.03"')):
        uid_key("1.2.03", "StudyInstanceUID")


def test_error_message_shows_a_bounded_printable_value():
    with pytest.raises(InvalidKeyError) as caught:
        instance_file_name("9" * 10_000 + "\x00")
    message = str(caught.value)
    assert len(message) < 200
    assert "\x00" not in message
