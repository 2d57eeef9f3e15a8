"""Bad input to any ``dicomflow`` command: one error line on stderr, no traceback, a
non-zero exit code; results on stdout, diagnostics on stderr."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")
PIPELINE = Path(__file__).parent / "pipelines" / "copy_pipeline.py"
EXAMPLES = Path(__file__).parents[2] / "examples" / "services"
FORM = "must look like AE_TITLE@host:port (e.g. PACS@10.0.0.5:104)"


def dicomflow(
    *args: object, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("DICOMFLOW_")}
    return subprocess.run(
        [DICOMFLOW, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=base | {"DICOMFLOW_WEB_PORT": "0"} | (env or {}),
        timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == "", "an error is no result"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == result.stderr.splitlines(), result.stderr
    assert len(errors) == 1 and text in errors[0], result.stderr


def test_version_is_the_only_output(tmp_path: Path):
    result = dicomflow("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("dicomflow ") and len(result.stdout.split()) == 2
    assert result.stderr == ""


@pytest.mark.parametrize("args", [[], ["cod"], ["service"]], ids=["main", "cod", "service"])
def test_no_arguments_show_the_help(args: list[str], tmp_path: Path):
    result = dicomflow(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "Usage: dicomflow" in result.stdout and result.stderr == ""


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("serve", "--bogus"), 2, "No such option: --bogus (see: dicomflow serve --help)"),
        (("echo", "127.0.0.1", "abc"), 2, "Invalid value for 'port'"),
        (("echo", "127.0.0.1", "70000"), 2, "Invalid value for 'port'"),
        (("send", "127.0.0.1", "0", "x.dcm"), 2, "Invalid value for 'port'"),
        (("send", "127.0.0.1", "104", "missing.dcm"), 2, "'missing.dcm' does not exist"),
        (("echo", "127.0.0.1"), 2, "Missing argument 'port'"),
        (("nosuch",), 2, "No such command 'nosuch'"),
        (("service", "list", "-r", "missing"), 1, 'Services folder "missing" does not exist.'),
        (("run", "missing.py"), 2, 'Pipeline file "missing.py" does not exist.'),
        (("serve", "--services", "missing"), 2, 'Services folder "{tmp}/missing" does not exist'),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], code: int, text: str, tmp_path: Path):
    assert_one_line_error(dicomflow(*args, cwd=tmp_path), code, text.format(tmp=tmp_path))


@pytest.mark.parametrize("endpoint", ["host:104", "PACS@host", "@host:104"])
def test_an_endpoint_needs_ae_title_host_and_port(endpoint: str, tmp_path: Path):
    result = dicomflow("serve", PIPELINE, "--endpoint", endpoint, cwd=tmp_path)
    message = f'setting endpoints: endpoint "{endpoint}" {FORM}; got ["{endpoint}"] from option'
    assert_one_line_error(result, 2, f"{message} --endpoint.")


@pytest.mark.parametrize(
    ("variable", "value", "text"),
    [
        ("ENDPOINTS", "PACS@h:104", 'a list must be given as JSON, like ["PACS@10.0.0.5:104"]'),
        ("ENDPOINTS", '["h:104"]', f'endpoint "h:104" {FORM}'),
        ("ENDPOINTS", '["PACS@h"]', f'endpoint "PACS@h" {FORM}'),
        ("ALLOWED_IPS", "10.0.0.0/8", 'a list must be given as JSON, like ["10.0.0.0/8"]'),
        ("PORT", "abc", "Input should be a valid integer"),
    ],
)
def test_a_bad_environment_variable_is_named_with_its_value(
    variable: str, value: str, text: str, tmp_path: Path
):
    result = dicomflow(
        "serve", "--services", ".", cwd=tmp_path, env={f"DICOMFLOW_{variable}": value}
    )
    origin = f'got "{value}" from environment variable DICOMFLOW_{variable}.'
    assert_one_line_error(result, 2, f"setting {variable.lower()}: {text}")
    assert origin in result.stderr


@pytest.mark.parametrize(
    ("toml", "text"),
    [
        ('port = "abc"\n', "setting port: Input should be a valid integer, unable to parse"),
        ("port = \n", 'Settings file "{path}" cannot be read as TOML: Invalid value (at line 1'),
        (
            "bogus = 1\n",
            'setting bogus: there is no such setting; got 1 from settings file "{path}"',
        ),
        ('endpoints = ["h:104"]\n', f'setting endpoints: endpoint "h:104" {FORM}'),
        ("web_token = 5\n", "web_token: Input should be a valid string; got a hidden value"),
        (None, 'Settings file "{path}" (DICOMFLOW_CONFIG) does not exist.'),
    ],
)
def test_a_broken_settings_file_is_named_with_the_field(
    toml: str | None, text: str, tmp_path: Path
):
    path = tmp_path / "dicomflow.toml"
    if toml is not None:
        path.write_text(toml)
    result = dicomflow(
        "serve", "--services", ".", cwd=tmp_path, env={"DICOMFLOW_CONFIG": str(path)}
    )
    assert_one_line_error(result, 2, text.format(path=path))
    assert str(path) in result.stderr


def test_the_dashboard_names_a_broken_settings_file(tmp_path: Path):
    path = tmp_path / "dicomflow.toml"
    path.write_text("workers = 0\n")
    result = dicomflow("dashboard", cwd=tmp_path, env={"DICOMFLOW_CONFIG": str(path)})
    message = "setting workers: Input should be greater than or equal to 1; got 0 from"
    assert_one_line_error(result, 2, f'{message} settings file "{path}".')


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--services", ".", "--port", "0", "--data-dir", "file/data"],
        ["dashboard", "--data-dir", "file/data"],
        ["worker", "--queue", "sqlite:///{tmp}/file/queue.db", "--burst"],
    ],
    ids=["serve", "dashboard", "worker"],
)
def test_an_unusable_data_path_is_one_line(args: list[str], tmp_path: Path):
    (tmp_path / "file").write_text("a file, not a folder")
    result = dicomflow(*[arg.format(tmp=tmp_path) for arg in args], cwd=tmp_path)
    assert_one_line_error(result, 1, f'Cannot use "{tmp_path}/file')


def test_service_commands_report_on_stdout(tmp_path: Path):
    root = tmp_path / "services"
    installed = dicomflow(
        "service", "install", "measure", "-p", EXAMPLES / "measure", "-r", root, cwd=tmp_path
    )
    assert (installed.returncode, installed.stderr) == (0, "")
    assert installed.stdout == f"installed measure (measure) in {root}\n"
    listing = dicomflow("service", "list", "-r", root, cwd=tmp_path)
    assert (listing.returncode, listing.stderr) == (0, "")
    assert "measure.run" in listing.stdout
    backup = dicomflow(
        "service", "backup", "measure", "-b", tmp_path / "m.tar.gz", "-r", root, cwd=tmp_path
    )
    assert (
        backup.stdout == f"backed up measure to {tmp_path / 'm.tar.gz'}\n" and backup.stderr == ""
    )
