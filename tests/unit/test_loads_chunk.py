"""A stream's chunk is read with json's scanner directly: the same value or the same kind of
error as ``json.loads`` for every text, however it is written."""

from __future__ import annotations

import json
import math

import pytest

from desktop_app.core.errors import CorruptStream
from desktop_app.core.providers.base import loads_chunk

TEXTS = (
    '{"choices":[{"delta":{"content":"hi"}}]}',
    ' {"a": 1}',
    '{"a": 1} ',
    '\n{"a": 1}\r\n',
    '\ufeff{"a": 1}',
    '{"a": 1}{"b": 2}',
    '{"a": 1} x',
    '{"a": "\\ud83d"}',
    '"text"',
    "[1, 2.5, -3e400, true, null]",
    "NaN",
    "-Infinity",
    "12345678901234567890",
    "",
    " ",
    "{",
    "[DONE]",
    "data: {}",
    '{"a": 1,}',
    "{'a': 1}",
)


@pytest.mark.parametrize("text", TEXTS)
def test_a_chunk_reads_as_json_loads_reads_it(text: str) -> None:
    try:
        want = json.loads(text)
    except ValueError:
        with pytest.raises(CorruptStream):
            loads_chunk(text, "OpenAI")
        return
    got = loads_chunk(text, "OpenAI")
    if isinstance(want, float) and math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want
        assert type(got) is type(want)


def test_bytes_and_deep_nesting_read_as_before() -> None:
    assert loads_chunk(b'{"a": [1]}', "Ollama") == {"a": [1]}
    with pytest.raises(CorruptStream):
        loads_chunk(b"\xff", "Ollama")
    with pytest.raises(RecursionError):  # the parser's caller makes this a corrupt stream
        loads_chunk("[" * 100_000, "OpenAI")
