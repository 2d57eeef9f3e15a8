"""A service's own virtual environment: built from its ``requirements.txt``, seen by its worker.

The environment is created with ``--system-site-packages``. When dicomflow
itself runs from a virtual environment (the usual case), the base
interpreter's site-packages hold neither dicomflow nor pydicom, so a
``_dicomflow_parent.pth`` file in the new environment adds the running
environment's site-packages too — after the service's own, so the service's
requirements take precedence.
"""

import logging
import os
import site
import subprocess
import sys
from pathlib import Path

from dicomflow.errors import ServiceDefinitionError

logger = logging.getLogger(__name__)

PIP_TIMEOUT_S = 1800.0
BRIDGE_FILE = "_dicomflow_parent.pth"


def venv_python(venv_dir: Path) -> Path:
    """The Python interpreter of the environment at ``venv_dir``."""
    if os.name == "nt":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"


def site_dirs(venv_dir: Path) -> list[Path]:
    """The site-packages folders of the environment at ``venv_dir`` that exist."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [venv_dir / "Lib" / "site-packages", venv_dir / "lib" / version / "site-packages"]
    return [folder for folder in candidates if folder.is_dir()]


def system_site_dirs(venv_dir: Path) -> list[Path]:
    """The base interpreter's site-packages, if the environment at ``venv_dir`` sees them."""
    try:
        config = (venv_dir / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        return []
    values = dict(_config_line(line) for line in config.splitlines() if "=" in line)
    if values.get("include-system-site-packages", "").lower() != "true" or "home" not in values:
        return []
    prefix = Path(values["home"]).parent
    return [Path(folder) for folder in site.getsitepackages([str(prefix)]) if Path(folder).is_dir()]


def _config_line(line: str) -> tuple[str, str]:
    key, _, value = line.partition("=")
    return key.strip().lower(), value.strip()


def create_environment(
    venv_dir: Path, requirements: Path, *, timeout_s: float = PIP_TIMEOUT_S
) -> None:
    """Create a virtual environment at ``venv_dir`` and install ``requirements`` into it.

    Raises:
        ServiceDefinitionError: with the tail of pip's output, if either step fails.
    """
    command = [sys.executable, "-m", "venv", "--system-site-packages", str(venv_dir)]
    _run(command, f"Creating the virtual environment {venv_dir}", timeout_s)
    _bridge_running_environment(venv_dir)
    pip = [str(venv_python(venv_dir)), "-m", "pip", "install", "--disable-pip-version-check"]
    pip += ["--no-input", "-r", str(requirements)]
    _run(pip, f"Installing {requirements} into {venv_dir}", timeout_s)


def _bridge_running_environment(venv_dir: Path) -> None:
    if sys.prefix == sys.base_prefix:
        return  # not in a virtual environment: --system-site-packages is enough
    lines = [f"import site; site.addsitedir({folder!r})\n" for folder in site.getsitepackages()]
    for folder in site_dirs(venv_dir):
        (folder / BRIDGE_FILE).write_text("".join(lines), encoding="utf-8")


def _run(command: list[str], what: str, timeout_s: float) -> None:
    logger.info("%s", what)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise ServiceDefinitionError(f"{what} took longer than {timeout_s:.0f} s.") from exc
    except OSError as exc:
        raise ServiceDefinitionError(f"{what} could not start: {exc}.") from exc
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-2000:]
        raise ServiceDefinitionError(f"{what} failed (exit status {result.returncode}):\n{output}")
