"""What an MCP server sends is data: tool names checked, descriptions, schemas, results and
images bounded; and the SDK stays out of Rill's start."""

from __future__ import annotations

import base64
import subprocess
import sys

import mcp_types as types

from desktop_app.core.tools.base import RESULT_LIMIT_CHARS, ToolInfo
from desktop_app.core.tools.config import ServerConfig
from desktop_app.core.tools.mcp import (
    DESCRIPTION_LIMIT_CHARS,
    IMAGE_LIMIT_BYTES,
    MAX_IMAGES,
    _output,
    _tool_info,
)

SERVER = ServerConfig(name="srv", command="x", policies={"ok": "always"})
SCHEMA = {"type": "object", "properties": {}}


def test_tool_names_the_mcp_specification_allows_pass_and_others_are_left_out() -> None:
    info, _ = _tool_info(SERVER, "ok", "Does things.", SCHEMA)
    assert info == ToolInfo("srv", "ok", "Does things.", SCHEMA, "always")
    for good in ("github.create_issue", "a-b_c", "x" * 128):
        assert _tool_info(SERVER, good, "", SCHEMA)[0] is not None
    for bad in ("", "a b", "x" * 129, "naïve", "<b>bold</b>", "\x1b[31mred", "a/b", 7):
        info, why = _tool_info(SERVER, bad, "", SCHEMA)
        assert info is None
        assert "a tool name is 1 to 128 letters" in why
        assert "\x1b" not in why


def test_descriptions_and_schemas_are_bounded() -> None:
    info, _ = _tool_info(SERVER, "ok", "d" * 100_000, SCHEMA)
    assert info is not None and len(info.description) == DESCRIPTION_LIMIT_CHARS
    huge = {"type": "object", "properties": {f"p{k}": {"type": "string"} for k in range(5000)}}
    info, why = _tool_info(SERVER, "ok", "", huge)
    assert info is None and "sensible size" in why
    info, why = _tool_info(SERVER, "ok", "", "not a schema")
    assert info is None


def test_a_long_text_result_is_cut_and_says_so() -> None:
    result = types.CallToolResult(content=[types.TextContent(type="text", text="y" * 300_000)])
    out = _output(result)
    assert out.text.startswith("y" * RESULT_LIMIT_CHARS)
    assert out.text.endswith(f"[cut at {RESULT_LIMIT_CHARS:,} characters]")
    assert not out.is_error


def test_images_are_decoded_and_bounded_in_size_and_number() -> None:
    small = base64.b64encode(b"\x89PNG small").decode()
    big = base64.b64encode(b"\0" * (IMAGE_LIMIT_BYTES + 10)).decode()
    content: list[types.ContentBlock] = [
        types.ImageContent(type="image", data="@@not base64@@", mime_type="image/png")
    ]
    content += [
        types.ImageContent(type="image", data=small, mime_type="image/png")
        for _ in range(MAX_IMAGES + 1)
    ]
    content.append(types.ImageContent(type="image", data=big, mime_type="image/png"))
    content.append(types.ImageContent(type="image", data=small, mime_type="text/html"))
    out = _output(types.CallToolResult(content=content))
    assert len(out.images) == MAX_IMAGES
    assert out.images[0] == ("image/png", b"\x89PNG small")
    assert f"more than {MAX_IMAGES}" in out.text
    assert "could not decode" in out.text
    assert out.text.count("left out") == 3


def test_errors_resources_and_structured_results() -> None:
    error = types.CallToolResult(
        content=[types.TextContent(type="text", text="disk full")], is_error=True
    )
    assert _output(error).is_error and _output(error).text == "disk full"
    resource = types.CallToolResult(
        content=[
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(uri="file:///a.txt", text="inside a"),
            ),
            types.ResourceLink(type="resource_link", uri="file:///b.txt", name="b"),
        ]
    )
    assert _output(resource).text == "inside a\n[resource file:///b.txt]"
    structured = types.CallToolResult(content=[], structured_content={"n": 1})
    assert _output(structured).text == '{"n": 1}'
    lone = types.CallToolResult(content=[types.TextContent(type="text", text="a\ud800b")])
    assert _output(lone).text == "a\ufffdb"


def test_the_mcp_sdk_is_not_imported_until_a_server_starts() -> None:
    code = (
        "import sys\n"
        "import desktop_app.core.tools.mcp, desktop_app.core.tools.config\n"
        "from desktop_app.core.config import Config\n"
        "from desktop_app.core.tools.mcp import McpHost\n"
        "McpHost(Config()).states()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types', 'httpx2')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
