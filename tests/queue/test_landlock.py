"""Landlock write protection in a process of its own: what stays writable, and when the
protection would be void (then it is not applied, with a warning)."""

import subprocess
import sys
import textwrap
from pathlib import Path

PROTECT = """
import logging, shutil, sys
from pathlib import Path
from dicomflow.queue.landlock import protect

logging.basicConfig(level=logging.WARNING)
protected, writable = Path(sys.argv[1]), Path(sys.argv[2])
print("protected" if protect([protected], [writable]) else "unprotected")
for what, attempt in {
    "a file in the protected folder": lambda: (protected / "planted").write_text("x"),
    "the writable folder": lambda: shutil.rmtree(writable),
}.items():
    try:
        attempt()
        print(f"written: {what}")
    except PermissionError:
        print(f"refused: {what}")
"""


def run_protected(protected: Path, writable: Path) -> subprocess.CompletedProcess[str]:
    protected.mkdir(parents=True, exist_ok=True)
    writable.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-c", textwrap.dedent(PROTECT), str(protected), str(writable)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


def test_a_writable_folder_outside_the_protected_ones_stays_removable(tmp_path: Path) -> None:
    """Its parent is not made a directory "on the way": a job can remove its scratch folder."""
    result = run_protected(tmp_path / "data", tmp_path / "work" / "scratch")
    assert result.stdout.splitlines() == [
        "protected",
        "refused: a file in the protected folder",
        "written: the writable folder",
    ]


def test_a_writable_folder_containing_a_protected_one_leaves_the_job_unprotected(
    tmp_path: Path,
) -> None:
    """Granting it would lift the protection: none is applied, and the log says why."""
    result = run_protected(tmp_path / "archive" / "data", tmp_path / "archive")
    assert result.stdout.splitlines()[:2] == [
        "unprotected",
        "written: a file in the protected folder",
    ]
    assert "not write-protected: the writable directory" in result.stderr
    assert "contains the protected directory" in result.stderr
