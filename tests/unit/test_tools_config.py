"""The [mcp.servers] tables: reading, writing, broken entries, Claude Desktop import, and
secret env values in the keychain."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from keyring.backends import fail

from desktop_app.core.config import Config, load_config, save_config
from desktop_app.core.errors import ConfigError
from desktop_app.core.secrets import SERVICE, Secrets
from desktop_app.core.tools.config import (
    KEYCHAIN_REF,
    ServerConfig,
    add_server,
    import_claude_desktop,
    remove_server,
    resolve_secrets,
    server_config,
    server_configs,
    set_server_enabled,
    set_tool_policy,
    unique_name,
)
from tests.unit.test_secrets import MemoryKeyring

ISSUE_EXAMPLE = """
[mcp.servers.time]              # one table per server
command = "mcp-server-time"     # stdio: command, args, env, cwd
args = []
# url = "http://127.0.0.1:9000/mcp"   # or Streamable HTTP: url, headers
timeout_s = 60                  # per request; progress notifications extend it
enabled = true
[mcp.servers.time.tools.get_current_time]
policy = "always"               # ask | always | never (default ask)

[mcp.servers.files]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-filesystem", "/home/me"]
env = { DEBUG = "1" }
cwd = "/home/me"
timeout_s = 120.5
enabled = false

[mcp.servers.remote]
url = "https://mcp.example.com/mcp"
headers = { X-Team = "rill" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_format_of_the_issue_reads_as_written(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ISSUE_EXAMPLE))
    assert config.problems == []
    time, files, remote = server_configs(config)
    assert time == ServerConfig(
        name="time", command="mcp-server-time", policies={"get_current_time": "always"}
    )
    assert time.transport == "stdio" and time.policy("convert_time") == "ask"
    assert files.args == ("-y", "@modelcontextprotocol/server-filesystem", "/home/me")
    assert files.env == {"DEBUG": "1"} and files.cwd == "/home/me"
    assert files.timeout_s == 120.5 and not files.enabled
    assert remote.transport == "http" and remote.headers == {"X-Team": "rill"}
    assert server_config(config, "remote") == remote
    assert config["tools.max_rounds"] == 10


def test_saving_keeps_the_servers_and_reading_again_gives_the_same(tmp_path: Path) -> None:
    path = write(tmp_path, ISSUE_EXAMPLE + "\n[tools]\nmax_rounds = 4\n")
    config = load_config(path)
    assert config["tools.max_rounds"] == 4
    save_config(config)
    again = load_config(path)
    assert again.mcp == config.mcp
    assert server_configs(again) == server_configs(config)
    assert again["tools.max_rounds"] == 4


def test_broken_entries_are_problems_with_sentences_and_are_kept_in_the_file(
    tmp_path: Path,
) -> None:
    text = """
[mcp.servers.both]
command = "x"
url = "http://127.0.0.1:1/mcp"

[mcp.servers.neither]
args = ["--x"]

[mcp.servers."bad name!"]
command = "x"

[mcp.servers.badurl]
url = "ftp://example.com"

[mcp.servers.fixable]
command = "srv"
args = "not a list"
timeout_s = -3
enabled = "yes"
env = { GOOD = "1", BAD = 3 }
colour = "blue"
[mcp.servers.fixable.tools.write]
policy = "sometimes"

[tools]
max_rounds = 0
"""
    path = write(tmp_path, text)
    config = load_config(path)
    problems = {p.key: p.reason for p in config.problems}
    assert "either command" in problems["mcp.servers.both"]
    assert "either command" in problems["mcp.servers.neither"]
    assert "letters, digits" in problems["mcp.servers.bad name!"]
    assert "http://" in problems["mcp.servers.badurl.url"]
    assert "list of text" in problems["mcp.servers.fixable.args"]
    assert "using 60" in problems["mcp.servers.fixable.timeout_s"]
    assert "true or false" in problems["mcp.servers.fixable.enabled"]
    assert "left out" in problems["mcp.servers.fixable.env.BAD"]
    assert problems["mcp.servers.fixable.colour"] == "unknown key"
    assert "ask" in problems["mcp.servers.fixable.tools.write.policy"]
    assert "at least 1" in problems["tools.max_rounds"]
    for problem in config.problems:
        assert problem.line is None or problem.line > 0
    (fixable,) = server_configs(config)
    assert fixable.args == () and fixable.timeout_s == 60 and fixable.enabled
    assert fixable.env == {"GOOD": "1"} and fixable.policy("write") == "ask"
    save_config(config)
    kept = load_config(path).mcp["servers"]
    assert set(kept) == {"both", "neither", "bad name!", "badurl", "fixable"}
    assert kept["fixable"]["colour"] == "blue"


def test_an_mcp_key_that_is_not_a_table_is_a_problem(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'mcp = "on"\n'))
    assert [p.key for p in config.problems] == ["mcp"]
    assert server_configs(config) == []
    config = load_config(write(tmp_path, "[mcp]\nservers = 3\nother = 1\n"))
    assert {p.key for p in config.problems} == {"mcp.servers", "mcp.other"}
    assert server_configs(config) == []


def test_policies_and_switches_are_saved(tmp_path: Path) -> None:
    path = write(tmp_path, ISSUE_EXAMPLE)
    config = load_config(path)
    set_tool_policy(config, "time", "convert_time", "never")
    set_tool_policy(config, "time", "get_current_time", "ask")
    set_server_enabled(config, "files", True)
    set_server_enabled(config, "time", False)
    again = load_config(path)
    time = server_config(again, "time")
    assert time is not None and not time.enabled
    assert time.policy("convert_time") == "never" and time.policy("get_current_time") == "ask"
    files = server_config(again, "files")
    assert files is not None and files.enabled
    with pytest.raises(ValueError, match="ask, always, never"):
        set_tool_policy(config, "time", "x", "sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no MCP server 'ghost'"):
        set_server_enabled(config, "ghost", True)


def test_secret_env_values_and_headers_go_to_the_keychain(tmp_path: Path) -> None:
    keychain = MemoryKeyring()
    secrets = Secrets(backend=keychain, environ={})
    config = Config(path=tmp_path / "config.toml")
    server = ServerConfig(
        name="github",
        command="github-mcp",
        env={"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_abcdefghijklmnop", "LOG_LEVEL": "debug"},
    )
    stored = add_server(config, server, secrets)
    assert stored.env == {"GITHUB_PERSONAL_ACCESS_TOKEN": KEYCHAIN_REF, "LOG_LEVEL": "debug"}
    remote = ServerConfig(
        name="remote",
        url="https://mcp.example.com/mcp",
        headers={"Authorization": "Bearer sk-remote-123456", "X-Team": "rill"},
    )
    add_server(config, remote, secrets)
    text = config.path.read_text(encoding="utf-8")  # type: ignore[union-attr]
    assert "ghp_abcdefghijklmnop" not in text and "sk-remote-123456" not in text
    assert keychain.passwords == {
        (SERVICE, "mcp:github:GITHUB_PERSONAL_ACCESS_TOKEN"): "ghp_abcdefghijklmnop",
        (SERVICE, "mcp:remote:header:Authorization"): "Bearer sk-remote-123456",
    }
    again = load_config(config.path)  # type: ignore[arg-type]
    github = server_config(again, "github")
    assert github is not None
    env, _ = resolve_secrets(github, Secrets(backend=keychain, environ={}))
    assert env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_abcdefghijklmnop", "LOG_LEVEL": "debug"}
    remote_again = server_config(again, "remote")
    assert remote_again is not None
    _, headers = resolve_secrets(remote_again, secrets)
    assert headers["Authorization"] == "Bearer sk-remote-123456"
    remove_server(again, "github", secrets)
    assert server_config(load_config(config.path), "github") is None  # type: ignore[arg-type]
    assert (SERVICE, "mcp:github:GITHUB_PERSONAL_ACCESS_TOKEN") not in keychain.passwords


def test_without_a_keychain_a_secret_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    secrets = Secrets(backend=fail.Keyring(), environ={})  # type: ignore[no-untyped-call]
    config = Config(path=tmp_path / "config.toml")
    server = ServerConfig(name="s", command="srv", env={"API_KEY": "k-1234567890"})
    with pytest.raises(ConfigError) as caught:
        add_server(config, server, secrets)
    assert "No system keychain" in str(caught.value)
    assert "config file yourself" in caught.value.action
    assert "k-1234567890" not in str(caught.value)
    assert not config.path.exists()  # type: ignore[union-attr]


def test_a_secret_missing_from_the_keychain_is_a_sentence() -> None:
    server = ServerConfig(name="s", command="srv", env={"API_KEY": KEYCHAIN_REF})
    with pytest.raises(ConfigError, match="API_KEY for the MCP server 's' is not in the"):
        resolve_secrets(server, Secrets(backend=MemoryKeyring(), environ={}))


def test_a_bad_server_name_is_refused(tmp_path: Path) -> None:
    config = Config(path=tmp_path / "config.toml")
    with pytest.raises(ConfigError, match="cannot name a server"):
        add_server(config, ServerConfig(name="a b", command="x"), None)


# -- Claude Desktop ---------------------------------------------------------------------


def claude(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_import_claude_desktop_reads_stdio_and_http_servers(tmp_path: Path) -> None:
    path = claude(
        tmp_path,
        {
            "mcpServers": {
                "filesystem": {
                    "command": "npx",
                    "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me"],
                },
                "github": {
                    "command": "docker",
                    "args": ["run", "-i", "--rm", "ghcr.io/github/github-mcp-server"],
                    "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_x", "DEBUG": 1},
                },
                "my remote": {
                    "type": "http",
                    "url": "https://mcp.example.com/mcp",
                    "headers": {"Authorization": "Bearer t"},
                },
                "old sse": {"type": "sse", "url": "https://mcp.example.com/sse"},
            },
            "globalShortcut": "",
        },
    )
    servers = {s.name: s for s in import_claude_desktop(path)}
    assert set(servers) == {"filesystem", "github", "my-remote"}
    assert servers["filesystem"].command == "npx"
    assert servers["filesystem"].args[-1] == "/Users/me"
    assert servers["github"].env == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_x", "DEBUG": "1"}
    assert servers["my-remote"].url == "https://mcp.example.com/mcp"
    assert servers["my-remote"].headers == {"Authorization": "Bearer t"}


@pytest.mark.parametrize(
    ("content", "sentence"),
    [
        ('{"mcpServers": {"a": {"command": "x",}}}', "is not valid JSON (line 1"),
        ('{"servers": {}}', 'has no "mcpServers" object'),
        ("[1, 2]", 'has no "mcpServers" object'),
        ('{"mcpServers": {"a": {"type": "sse", "url": "http://h/sse"}}}', "No server of"),
        ('{"mcpServers": {"a": {"args": []}}}', "neither a command nor a url"),
    ],
)
def test_import_claude_desktop_explains_a_broken_file(
    tmp_path: Path, content: str, sentence: str
) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=sentence.replace("(", r"\(")):
        import_claude_desktop(path)


def test_import_claude_desktop_explains_a_missing_or_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="could not read"):
        import_claude_desktop(tmp_path / "nowhere.json")
    with pytest.raises(ConfigError, match="names no MCP server"):
        import_claude_desktop(claude(tmp_path, {"mcpServers": {}}))
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="could not read"):
        import_claude_desktop(tmp_path / "binary.json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_import_claude_desktop_explains_a_file_it_may_not_read(tmp_path: Path) -> None:
    path = claude(tmp_path, {"mcpServers": {}})
    path.chmod(0)
    try:
        with pytest.raises(ConfigError, match="no permission"):
            import_claude_desktop(path)
    finally:
        path.chmod(0o600)


def test_imported_servers_are_added_under_free_names_with_their_secrets_in_the_keychain(
    tmp_path: Path,
) -> None:
    keychain = MemoryKeyring()
    secrets = Secrets(backend=keychain, environ={})
    config = load_config(write(tmp_path, ISSUE_EXAMPLE))
    path = claude(
        tmp_path,
        {"mcpServers": {"time": {"command": "uvx", "env": {"TZ_API_KEY": "abcdefgh123"}}}},
    )
    for server in import_claude_desktop(path):
        name = unique_name(server.name, (s.name for s in server_configs(config)))
        add_server(config, ServerConfig(**{**_fields(server), "name": name}), secrets)
    again = load_config(config.path)  # type: ignore[arg-type]
    names = [s.name for s in server_configs(again)]
    assert names == ["time", "files", "remote", "time-2"]
    assert keychain.passwords == {(SERVICE, "mcp:time-2:TZ_API_KEY"): "abcdefgh123"}


def _fields(server: ServerConfig) -> dict[str, object]:
    return {name: getattr(server, name) for name in ServerConfig.__slots__}  # type: ignore[attr-defined]


def test_renaming_a_server_moves_its_secrets_and_dropping_one_removes_it(
    tmp_path: Path,
) -> None:
    keychain = MemoryKeyring()
    secrets = Secrets(backend=keychain, environ={})
    config = Config(path=tmp_path / "config.toml")
    env = {"API_KEY": "key-abcdefgh", "SECRET_TOKEN": "tok-abcdefgh", "MODE": "fast"}
    stored = add_server(config, ServerConfig(name="old", command="srv", env=env), secrets)
    assert stored.env == {"API_KEY": KEYCHAIN_REF, "SECRET_TOKEN": KEYCHAIN_REF, "MODE": "fast"}
    edited = ServerConfig(name="new", command="srv", env={"API_KEY": KEYCHAIN_REF, "MODE": "x"})
    add_server(config, edited, secrets, replacing="old")
    assert keychain.passwords == {(SERVICE, "mcp:new:API_KEY"): "key-abcdefgh"}
    again = load_config(config.path)  # type: ignore[arg-type]
    assert [s.name for s in server_configs(again)] == ["new"]
    new = server_config(again, "new")
    assert new is not None
    assert resolve_secrets(new, secrets)[0] == {"API_KEY": "key-abcdefgh", "MODE": "x"}
