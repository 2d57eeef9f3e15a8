"""One line for an invalid setting: the field, the value and where the value came from
(a command-line option, a pipeline class attribute, a ``DICOMFLOW_*`` variable or the
settings file)."""

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from dicomflow.settings import ENV_PREFIX, NodeSettings, settings_file

OPTION_NAMES = {
    "data_directory": "--data-dir",
    "endpoints": "--endpoint",
    "move_destinations": "--move-destination",
    "quiet_period_s": "--quiet-period",
    "processing_timeout_s": "--timeout",
    "services_directory": "--services",
    "queue_url": "--queue",
    "archive_datastore": "--archive",
    "web_enabled": "--no-web",
    "tls_certificate": "--tls-cert",
    "tls_private_key": "--tls-key",
    "tls_ca_certificates": "--tls-ca",
    "tls_require_client_certificate": "--tls-require-client-cert",
}


def option_name(field: str) -> str:
    """The command-line option that sets ``field``."""
    return OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


def class_origins(pipeline_class: type) -> dict[str, str]:
    """The settings a pipeline class sets, each described as its attribute."""
    from dicomflow.node.pipeline import SETTING_ATTRIBUTES  # only where a pipeline is loaded

    origins = {
        setting: f"class attribute {pipeline_class.__name__}.{attribute}"
        for attribute, setting in SETTING_ATTRIBUTES.items()
        if getattr(pipeline_class, attribute, None) is not None
    }
    if getattr(pipeline_class, "endpoints", None):
        origins["endpoints"] = f"class attribute {pipeline_class.__name__}.endpoints"
    return origins


def setting_error(exc: ValidationError, given: Mapping[str, str]) -> str:
    """The first error as one sentence; ``given`` maps a field set explicitly (by an option
    or a pipeline class attribute) to a description of where."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    name = ".".join(map(str, first["loc"])) or "settings"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "there is no such setting"
    value = _shown(field, first.get("input"))
    return f"setting {name}: {message}; got {value} from {origin(field, given)}."


def origin(field: str, given: Mapping[str, str]) -> str:
    """Where the value of ``field`` came from, in the order settings are looked up."""
    if field in given:
        return given[field]
    variable = ENV_PREFIX + field.upper()
    if any(name.upper() == variable for name in os.environ):
        return f"environment variable {variable}"
    path = settings_file()
    if path is not None and field in _file_keys(path):
        return f'settings file "{path}"'
    return "the default"


def _file_keys(path: Path) -> set[str]:
    try:
        with path.open("rb") as stream:
            return set(tomllib.load(stream))
    except (OSError, tomllib.TOMLDecodeError):
        return set()


def _shown(field: str, value: Any) -> str:
    """The value as the user wrote it, except secrets."""
    info = NodeSettings.model_fields.get(field)
    annotation = str(info.annotation) if info is not None else ""
    if isinstance(value, SecretStr) or "SecretStr" in annotation:
        return "a hidden value"
    if isinstance(value, str):
        return f'"{value}"'
    return json.dumps(value, default=str)
