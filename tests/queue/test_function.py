"""Job functions named by text."""

import os.path

import pytest

from dicomflow.errors import QueueError
from dicomflow.queue.function import check_function_name, resolve_function


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("os.path:join", os.path.join),
        ("os.path.join", os.path.join),
        ("os:path.join", os.path.join),
        ("json.decoder:JSONDecoder.decode", __import__("json").decoder.JSONDecoder.decode),
    ],
)
def test_both_name_forms_resolve(name: str, expected: object) -> None:
    assert resolve_function(name) is expected


@pytest.mark.parametrize("name", ["join", "os path", "os:", ":join", "1os.join", "", None, "a:b:c"])
def test_malformed_names_are_refused(name: object) -> None:
    with pytest.raises(QueueError, match="is not a name"):
        check_function_name(name)


def test_missing_attribute_and_module_are_named() -> None:
    with pytest.raises(QueueError, match=r'module os\.path has no attribute "nope"'):
        resolve_function("os.path:nope")
    with pytest.raises(QueueError, match="no module of that name"):
        resolve_function("no_such_package.module.function")
    with pytest.raises(QueueError, match="not a callable"):
        resolve_function("os:sep")
