"""Service files for the tests: callbacks and worker code, written from dicts and strings."""

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

CALLBACKS = """
def always(**kwargs):
    return True


def never(**kwargs):
    return False
"""

WORKER = """
import json
import pathlib


def run(jobName, headers, params, added_params, **kwargs):
    out = pathlib.Path(kwargs["output_dir"]) / f"{jobName}.json"
    out.write_text(json.dumps({"params": params, "added_params": added_params}))
"""


def write_files(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def settings_text(settings: Any) -> str:
    return settings if isinstance(settings, str) else json.dumps(settings, indent=2)


ServiceFolder = Callable[..., Path]
AddService = Callable[..., None]
