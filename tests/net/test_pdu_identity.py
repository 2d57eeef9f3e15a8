"""The User Identity sub-items (PS3.7 D.3.3.7) in dicomflow's codec, the identities file
and the decision both receivers take on an identity."""

import struct
from pathlib import Path

import pytest
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ

from dicomflow.errors import ProtocolError, UserIdentitiesFileError
from dicomflow.net import pdu
from dicomflow.net.user_identity import (
    Identities,
    IdentityKind,
    IdentityPolicy,
    IdentityProblem,
    KnownUser,
    PasswordHash,
    UserIdentity,
    format_identities,
    shown,
)

CT = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")


def request_with(identity: UserIdentity) -> bytes:
    return pdu.associate_rq("NODE", "CT1", [CT], 16384, identity)


def request_with_sub_item(value: bytes) -> bytes:
    """An A-ASSOCIATE-RQ body whose user information holds a 0x58 sub-item of ``value``."""
    body = pdu.associate_rq("NODE", "CT1", [CT], 16384)
    user_at = body.rindex(b"\x50\x00")
    (length,) = struct.unpack_from(">H", body, user_at + 2)
    user = body[user_at + 4 : user_at + 4 + length] + pdu.item(0x58, value)
    return body[:user_at] + pdu.item(0x50, user)


@pytest.mark.parametrize(
    "identity",
    [
        UserIdentity.of("alice"),
        UserIdentity.of("alice", "s3cret"),
        UserIdentity.of("alice", ""),  # an empty password (dcmtk's -epw)
        UserIdentity.of("zoë", "pässword", positive_response=False),
        UserIdentity(IdentityKind.KERBEROS, bytes(range(256)).decode("latin-1")),
        UserIdentity(IdentityKind.SAML, "<saml:Assertion/>"),
        UserIdentity(IdentityKind.JWT, "eyJhbGciOiJIUzI1NiJ9.e30.sig", b"", False),
        UserIdentity.of("n" * 10_000, "p" * 1000),
    ],
    ids=["username", "passcode", "empty-passcode", "no-response", "kerberos", "saml", "jwt", "10k"],
)
def test_a_user_identity_round_trips_through_the_codec(identity: UserIdentity):
    parsed = pdu.parse_associate_rq(request_with(identity))
    assert parsed.user_identity == identity
    assert parsed.contexts[0].abstract_syntax == CT[0]


def test_pynetdicom_reads_the_sub_item_dicomflow_packs():
    body = request_with(UserIdentity.of("alice", "s3cret"))
    decoded = A_ASSOCIATE_RQ()
    decoded.decode(struct.pack(">BBI", 1, 0, len(body)) + body)
    item = next(i for i in decoded.user_information.user_data if i.item_type == 0x58)
    assert (item.user_identity_type, item.primary_field, item.secondary_field) == (
        2,
        b"alice",
        b"s3cret",
    )
    assert item.positive_response_requested == 1


def test_a_request_without_a_user_identity_has_none():
    assert (
        pdu.parse_associate_rq(pdu.associate_rq("NODE", "CT1", [CT], 16384)).user_identity is None
    )


def test_the_positive_response_is_a_zero_length_server_response():
    body = pdu.associate_ac("CT1", "NODE", [pdu.context_item(1, 0, CT[1])], 16384, b"")
    assert pdu.user_identity_response(body) == b""
    decoded = A_ASSOCIATE_AC()
    decoded.decode(struct.pack(">BBI", 2, 0, len(body)) + body)
    item = next(i for i in decoded.user_information.user_data if i.item_type == 0x59)
    assert item.server_response == b""
    plain = pdu.associate_ac("CT1", "NODE", [pdu.context_item(1, 0, CT[1])], 16384)
    assert pdu.user_identity_response(plain) is None
    assert pdu.parse_associate_ac(body) == pdu.parse_associate_ac(plain)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\x02\x01", "truncated user identity sub-item"),
        (b"\x02\x01\x00\x10alice\x00\x00", "primary field runs past"),
        (b"\x02\x01\x00\x05alice", "primary field runs past"),  # no secondary length
        (b"\x02\x01\x00\x05alice\x01\x00pw", "secondary field runs past"),
        (b"\x09\x01\x00\x05alice\x00\x00", "type 9 is not defined"),
        (b"\x00\x01\x00\x05alice\x00\x00", "type 0 is not defined"),
    ],
    ids=["truncated", "primary-past", "no-secondary-length", "secondary-past", "type-9", "type-0"],
)
def test_a_malformed_sub_item_is_a_protocol_error(value: bytes, message: str):
    with pytest.raises(ProtocolError, match=message):
        pdu.parse_associate_rq(request_with_sub_item(value))


def test_a_sub_item_running_past_the_user_information_is_a_protocol_error():
    body = bytearray(request_with(UserIdentity.of("alice", "pw")))
    at = body.rindex(b"\x58\x00")
    body[at + 2 : at + 4] = struct.pack(">H", 0x4000)  # longer than the rest of the PDU
    with pytest.raises(ProtocolError):
        pdu.parse_associate_rq(bytes(body))


def test_an_identity_too_long_for_its_sub_item_is_refused_before_sending():
    with pytest.raises(ValueError, match="too long"):
        request_with(UserIdentity.of("a" * 40_000, "b" * 30_000))
    with pytest.raises(ValueError, match="needs a username"):
        request_with(UserIdentity.of(""))


def test_passcodes_and_tokens_stay_out_of_reprs():
    assert "s3cret" not in repr(UserIdentity.of("alice", "s3cret"))
    assert "TOKEN" not in repr(UserIdentity(IdentityKind.JWT, "TOKEN"))
    assert UserIdentity(IdentityKind.JWT, "TOKEN").name == "[jwt]"
    assert "digest" not in repr(PasswordHash.make("x", n=1024))


def test_a_logged_name_is_escaped_and_cut():
    assert shown("a\x00b\n") == "'a\\x00b\\n'"
    long = shown("x" * 10_000)
    assert len(long) < 100 and "10000 characters" in long


# -- hashes, the file, the decision -------------------------------------------------------


def test_a_password_hash_round_trips_and_checks():
    made = PasswordHash.make("s3cret", n=1024)
    parsed = PasswordHash.parse(str(made))
    assert str(parsed).startswith("scrypt$1024$8$1$")
    assert parsed.matches(b"s3cret")
    assert not parsed.matches(b"s3cret ")
    assert not parsed.matches(b"")


@pytest.mark.parametrize(
    "text",
    [
        "bcrypt$1024$8$1$c2FsdHNhbHQ=$" + "A" * 44,
        "scrypt$1000$8$1$c2FsdHNhbHQ=$" + "A" * 44,  # N not a power of two
        "scrypt$1024$8$1$not base64$" + "A" * 44,
        "scrypt$1024$8$1$c2FsdHNhbHQ=",
        "scrypt$1048576000$8$1$c2FsdHNhbHQ=$" + "A" * 44,
        "scrypt$1048576$32$1$c2FsdHNhbHQ=$" + "A" * 44,  # 4 GiB per check
    ],
)
def test_a_malformed_hash_is_refused(text: str):
    with pytest.raises(ValueError):
        PasswordHash.parse(text)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[users.alice\n", ""),
        ('[users.alice]\npassword_hash = "plain"\n', "users.alice.password_hash"),
        ("[users.alice]\npassword_hash = 7\n", "users.alice.password_hash"),
        ('[users.alice]\nallowed_ae_titles = ["WAY-TOO-LONG-AE-TITLE"]\n', "allowed_ae_titles"),
        ("[users.alice]\npasword_hash = 'x'\n", "users.alice.pasword_hash"),
        ("[people.alice]\n", "people"),
    ],
    ids=["toml", "hash-format", "hash-type", "ae-title", "typo", "table"],
)
def test_a_wrong_identities_file_is_one_line_naming_it_and_the_field(
    tmp_path: Path, text: str, field: str
):
    path = write(tmp_path / "users.toml", text)
    with pytest.raises(UserIdentitiesFileError) as caught:
        Identities.load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and field in message


def test_a_missing_identities_file_is_named(tmp_path: Path):
    with pytest.raises(UserIdentitiesFileError, match=r"users\.toml"):
        Identities.load(tmp_path / "users.toml")


def test_the_file_written_reads_back(tmp_path: Path):
    users = [
        KnownUser('a "quoted"\\ name', PasswordHash.make("pw", n=1024), frozenset({"CT1", "MR"})),
        KnownUser("robot", None),
    ]
    path = write(tmp_path / "users.toml", format_identities(users))
    loaded = Identities.load(path)
    assert set(loaded.users) == {'a "quoted"\\ name', "robot"}
    assert loaded.users['a "quoted"\\ name'].allowed_ae_titles == {"CT1", "MR"}
    assert loaded.users["robot"].password_hash is None


def policy(required: bool = False) -> IdentityPolicy:
    users = {
        "alice": KnownUser("alice", PasswordHash.make("s3cret", n=1024), frozenset({"CT1"})),
        "robot": KnownUser("robot", None),
    }
    return IdentityPolicy(Identities(Path("users.toml"), users), required)


@pytest.mark.parametrize(
    ("identity", "calling", "problem"),
    [
        (UserIdentity.of("alice", "s3cret"), "CT1", None),
        (UserIdentity.of("alice", "wrong"), "CT1", IdentityProblem.WRONG_PASSWORD),
        (UserIdentity.of("alice"), "CT1", IdentityProblem.WRONG_PASSWORD),
        (UserIdentity.of("alice", "s3cret"), "MR1", IdentityProblem.AE_NOT_ALLOWED),
        (UserIdentity.of("bob", "s3cret"), "CT1", IdentityProblem.UNKNOWN_USER),
        (UserIdentity.of("robot"), "ANY", None),
        (UserIdentity(IdentityKind.JWT, "token"), "CT1", IdentityProblem.UNVERIFIABLE),
        (None, "CT1", None),
    ],
)
def test_the_decision_on_an_identity(
    identity: UserIdentity | None, calling: str, problem: IdentityProblem | None
):
    verdict = policy().check(identity, calling)
    assert verdict.problem == problem
    assert verdict.name == (identity.name if identity is not None else "")
    if problem is None and identity is not None:
        assert verdict.response == b""  # asked for, for a username (and passcode)


def test_without_a_file_every_identity_is_accepted_and_answered_when_asked():
    anyone = IdentityPolicy()
    assert anyone.check(UserIdentity.of("x", "y"), "CT1").response == b""
    quiet = UserIdentity.of("x", "y", positive_response=False)
    assert anyone.check(quiet, "CT1").response is None
    token = anyone.check(UserIdentity(IdentityKind.SAML, "<a/>"), "CT1")
    assert token.accepted and token.response is None and token.name == "[saml]"
    assert IdentityPolicy(required=True).check(None, "CT1").problem == IdentityProblem.MISSING
