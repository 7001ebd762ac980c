"""Text from outside Rill reaches a terminal as text, never as control sequences."""

from __future__ import annotations

import json

import pytest

from desktop_app.core.terminal import for_terminal, json_for_terminal

HOSTILE = "title\x1b]0;pwned\x07 clear\x1b[2J clip\x1b]52;c;aGk=\x07 csi\x9b2J del\x7f end"


def test_every_control_but_newline_and_tab_is_made_visible() -> None:
    shown = for_terminal(HOSTILE + "\tx\n")
    assert shown == ("title␛]0;pwned␇ clear␛[2J clip␛]52;c;aGk=␇ csi\ufffd2J del␡ end\tx\n")
    controls = [chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n\r"]
    for control in controls:
        shown = for_terminal(control)
        assert len(shown) == 1 and shown.isprintable(), repr(control)


@pytest.mark.parametrize(
    "bidi", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2069"]
)
def test_bidi_overrides_are_made_visible(bidi: str) -> None:
    assert for_terminal(f"a{bidi}b") == "a\ufffdb"


def test_carriage_returns_cannot_overwrite_a_line() -> None:
    assert for_terminal("line\r\nnext") == "line\nnext"
    assert "\r" not in for_terminal("safe text\rrm -rf")


def test_lone_surrogates_become_replacement_characters() -> None:
    shown = for_terminal("smile \ud83d lone \udfff end")
    assert shown == "smile \ufffd lone \ufffd end"
    shown.encode("utf-8")


def test_ordinary_text_is_unchanged() -> None:
    text = "Rivers ╭─╮ 🌊 naïve — 漢字\n\tindented | table |\n"
    assert for_terminal(text) is text


def test_json_keeps_the_data_and_loses_the_raw_controls() -> None:
    data = {"content": HOSTILE + "\u202e\ud800"}
    text = json_for_terminal(json.dumps(data, ensure_ascii=False))
    assert json.loads(text) == data
    assert for_terminal(text) == text
    text.encode("utf-8")
