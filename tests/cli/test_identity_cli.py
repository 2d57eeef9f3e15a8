"""``dicomflow identity add``, a node using the file it writes, and ``dicomflow send`` /
``echo`` presenting a user identity, run as a user runs them."""

import signal
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_cli import COPY_PIPELINE, DICOMFLOW, assert_one_line_error, clean_env, stops_cleanly

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.net.user_identity import Identities
from support import StoreSCPPeer, free_port, wait_for_port

NodeStarter = Callable[..., tuple[subprocess.Popen[bytes], int]]


def run(*args: object, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DICOMFLOW, *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(),
        timeout=120,
    )


def add(users: Path, name: str, password: str, *options: str) -> None:
    result = run(
        "identity",
        "add",
        users,
        name,
        "--password-stdin",
        *options,
        cwd=users.parent,
        stdin=f"{password}\n",
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def node_with(tmp_path: Path, storescp: StoreSCPPeer) -> Iterator[NodeStarter]:
    """Start ``dicomflow serve`` with extra environment settings; stop it afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**settings: str) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        env = {
            **clean_env(),
            **{f"DICOMFLOW_{key.upper()}": value for key, value in settings.items()},
        }
        command = [DICOMFLOW, "serve", str(COPY_PIPELINE), "--no-web", "--port", str(port)]
        command += ["--data-dir", str(tmp_path / "data"), "--endpoint", storescp.endpoint()]
        with (tmp_path / "node.log").open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env
            )
        started.append(process)
        return process, port

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_identity_add_writes_a_private_file_and_updates_it(tmp_path: Path):
    users = tmp_path / "users.toml"
    add(users, "alice", "s3cret", "--ae", "CT1", "--ae", "MR1")
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert "s3cret" not in users.read_text()
    add(users, "bob", "hunter2")
    add(users, "alice", "n3w")  # replaced: a new password, any AE title
    result = run("identity", "add", users, "robot", "--no-password", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    loaded = Identities.load(users).users
    assert set(loaded) == {"alice", "bob", "robot"}
    assert loaded["alice"].password_hash is not None
    assert loaded["alice"].password_hash.matches(b"n3w")
    assert loaded["alice"].allowed_ae_titles == frozenset()
    assert loaded["robot"].password_hash is None
    assert stat.S_IMODE(users.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("args", "stdin", "text"),
    [
        (["alice", "--ae", "WAY-TOO-LONG-AE-TITLE"], "pw\n", "is not a valid AE title"),
        (["", "--password-stdin"], "pw\n", "a username must be"),
        (["al\x1bice", "--password-stdin"], "pw\n", "a username must be"),
        (["alice", "--password-stdin"], "\n", "the password is empty"),
    ],
    ids=["ae-title", "empty-name", "control-name", "empty-password"],
)
def test_identity_add_refuses_bad_input_in_one_line(
    tmp_path: Path, args: list[str], stdin: str, text: str
):
    result = run("identity", "add", tmp_path / "users.toml", *args, cwd=tmp_path, stdin=stdin)
    assert_one_line_error(result, 2, text)
    assert not (tmp_path / "users.toml").exists()


def test_identity_add_refuses_to_update_a_broken_file(tmp_path: Path):
    users = tmp_path / "users.toml"
    users.write_text('[users.alice]\npassword_hash = "md5$abc"\n')
    result = run("identity", "add", users, "bob", "--password-stdin", cwd=tmp_path, stdin="pw\n")
    assert_one_line_error(result, 1, "users.alice.password_hash")
    assert "md5$abc" in users.read_text(), "left as it was"


def test_a_node_checks_identities_from_the_file_identity_add_wrote(
    tmp_path: Path, node_with: NodeStarter
):
    users = tmp_path / "users.toml"
    add(users, "alice", "s3cret")
    node, port = node_with(user_identities_file=str(users), require_user_identity="true")
    wait_for_port(port, timeout_s=30)
    files = write_series(make_ct_series(2, rows=16, columns=16), tmp_path / "series")

    sent = run(
        "send",
        "127.0.0.1",
        port,
        *files,
        "--aec",
        "DICOMFLOW",
        "--username",
        "alice",
        "--password-stdin",
        cwd=tmp_path,
        stdin="s3cret\n",
    )
    assert sent.returncode == 0, sent.stderr
    assert "sent 2 of 2" in sent.stdout
    echo = run(
        "echo",
        "127.0.0.1",
        port,
        "--aec",
        "DICOMFLOW",
        "--username",
        "alice",
        "--password",
        "s3cret",
        cwd=tmp_path,
    )
    assert echo.returncode == 0, echo.stderr
    assert "without confirming" not in echo.stderr, "the node answers the positive response"

    wrong = run(
        "echo",
        "127.0.0.1",
        port,
        "--aec",
        "DICOMFLOW",
        "--username",
        "alice",
        "--password",
        "nope",
        cwd=tmp_path,
    )
    assert_one_line_error(wrong, 1, "rejected the association permanently (no reason given)")
    anonymous = run("echo", "127.0.0.1", port, "--aec", "DICOMFLOW", cwd=tmp_path)
    assert_one_line_error(anonymous, 1, "rejected the association permanently")
    dcmtk = subprocess.run(
        [
            "storescu",
            "-aec",
            "DICOMFLOW",
            "-usr",
            "alice",
            "-pwd",
            "s3cret",
            "-rsp",
            "127.0.0.1",
            str(port),
            str(files[0]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dcmtk.returncode == 0, dcmtk.stderr

    node.send_signal(signal.SIGINT)
    stops_cleanly(node, tmp_path / "node.log")
    log = (tmp_path / "node.log").read_text()
    assert "user 'alice': wrong password" in log
    assert "user '': no user identity" in log
    assert "Traceback" not in log


def test_a_wrong_identities_file_stops_the_node_in_one_line(tmp_path: Path, node_with: NodeStarter):
    users = tmp_path / "users.toml"
    users.write_text('[users.alice]\npassword_hash = "scrypt$3$8$1$AAAA$AAAA"\n')
    users.chmod(0o600)
    node, _ = node_with(user_identities_file=str(users))
    assert node.wait(timeout=60) == 1
    log = (tmp_path / "node.log").read_text()
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, log
    assert str(users) in errors[0] and "users.alice.password_hash" in errors[0]
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("options", "text"),
    [
        (["--password", "x"], "need --username"),
        (["--username", "a", "--password", "x", "--password-stdin"], "not both"),
        (["--username", ""], "must not be empty"),
    ],
)
def test_echo_identity_options_that_do_not_fit_are_one_line(
    tmp_path: Path, options: list[str], text: str
):
    result = run("echo", "127.0.0.1", free_port(), *options, cwd=tmp_path)
    assert_one_line_error(result, 2, text)


def test_send_warns_when_the_peer_does_not_confirm(tmp_path: Path, storescp: StoreSCPPeer):
    """dcmtk storescp ignores identities: the send goes on, with a warning."""
    files = write_series(make_ct_series(1, rows=16, columns=16), tmp_path / "series")
    result = run(
        "send",
        "127.0.0.1",
        storescp.port,
        *files,
        "--aec",
        "PACS",
        "--username",
        "alice",
        "--password",
        "pw",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "without confirming user 'alice'" in result.stderr + result.stdout
    assert len(storescp.files()) == 1
