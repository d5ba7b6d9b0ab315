"""Tests for depth-limited JSON parsing of untrusted input."""

from __future__ import annotations

import time

import pytest

from cpchain.crypto import (
    InvalidBackup,
    MalformedCiphertext,
    MalformedMessage,
    SignedMessage,
    import_backup,
    open_secret,
)
from cpchain.crypto._json import MAX_JSON_DEPTH, loads_limited


def test_normal_json() -> None:
    assert loads_limited('{"a": [1, {"b": "[[[["}]}') == {"a": [1, {"b": "[[[["}]}
    assert loads_limited(b'["\\"[", "]"]') == ['"[', "]"]
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_limited(nested) is not None


@pytest.mark.parametrize(
    "text",
    [
        "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1),
        '{"a":' * 100 + "1" + "}" * 100,
        "[" * 200_000,
        "[" * 200_000 + "]" * 200_000,
    ],
)
def test_too_deep_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="deep"):
        loads_limited(text)


def test_brackets_inside_strings_do_not_count() -> None:
    text = '["' + "[" * 1000 + '"]'
    assert loads_limited(text) == ["[" * 1000]


@pytest.mark.parametrize(
    "text",
    ['\\"' * 400_000 + "[" * 70, '"' + "\\" * 800_000 + "[" * 70, ' "' * 400_000 + "[" * 70],
)
def test_pathological_input_is_linear(text: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError):
        loads_limited(text)
    assert time.perf_counter() - start < 2.0


def test_callers_map_to_typed_errors() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(MalformedMessage):
        SignedMessage.from_json(deep)
    with pytest.raises(InvalidBackup):
        import_backup(deep, "pw")
    with pytest.raises(MalformedCiphertext):
        open_secret(deep, "pw")
    with pytest.raises(MalformedMessage):
        SignedMessage.from_json(b"\xff\xfe")
