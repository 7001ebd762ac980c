"""The MCP servers of the config file, and importing them from Claude Desktop.

One table per server in ``config.toml``::

    [mcp.servers.time]                  # the server's name: letters, digits, - and _
    command = "mcp-server-time"         # stdio: command, args, env, cwd
    args = ["--local-timezone", "Europe/Paris"]
    env = { GITHUB_TOKEN = "<keychain>" }
    cwd = "/home/me/projects"
    # url = "http://127.0.0.1:9000/mcp" # or Streamable HTTP: url, headers
    # headers = { Authorization = "<keychain>" }
    timeout_s = 60                      # per request; each progress notification restarts it
    enabled = true
    [mcp.servers.time.tools.get_current_time]
    policy = "always"                   # ask | always | never (default ask)

A server has either ``command`` or ``url``. An env value (or header) whose name contains
KEY, TOKEN, SECRET or PASSWORD is a secret: when Rill adds a server (Settings, or the import
from Claude Desktop) it stores such a value in the system keychain (service ``Rill``, user
``mcp:SERVER:NAME``, or ``mcp:SERVER:header:NAME`` for a header) and writes ``"<keychain>"``
in its place; starting the server reads it back. A value written by hand is used as written.

The file keeps the ``[mcp]`` tables as written (:attr:`Config.mcp`), so saving never drops a
server Rill could not understand; each problem is reported once, when the file is read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from desktop_app.core.config import Config, check_base_url, save_config
from desktop_app.core.errors import ConfigError
from desktop_app.core.tools.base import DEFAULT_TIMEOUT_S, POLICIES, Policy

if TYPE_CHECKING:
    from desktop_app.core.secrets import Secrets

KEYCHAIN_REF = "<keychain>"
"""What the file holds in place of a secret that lives in the keychain."""
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|AUTHORIZATION", re.IGNORECASE)
"""Env variables and headers whose values are secrets."""
SERVER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TIMEOUT_S = 24 * 3600.0
CLAUDE_CONFIG_LIMIT_BYTES = 4 * 1024 * 1024

Transport = Literal["stdio", "http"]

_SERVER_KEYS = frozenset(
    {"command", "args", "env", "cwd", "url", "headers", "timeout_s", "enabled", "tools"}
)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """One MCP server as the config describes it."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment of a stdio server (values may be :data:`KEYCHAIN_REF`)."""
    cwd: str = ""
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    enabled: bool = True
    policies: Mapping[str, Policy] = field(default_factory=dict)
    """Each tool's policy, for the tools that have one (the others: ask)."""

    @property
    def transport(self) -> Transport:
        return "http" if self.url else "stdio"

    def policy(self, tool: str) -> Policy:
        return self.policies.get(tool, "ask")

    def describe(self) -> str:
        """The command line or the address, for a person to read."""
        if self.url:
            return self.url
        return " ".join([self.command, *self.args])


def is_secret_name(name: str) -> bool:
    return SECRET_NAME.search(name) is not None


def keychain_name(server: str, variable: str, *, header: bool = False) -> str:
    """The keychain user name of one secret of ``server``."""
    return f"mcp:{server}:header:{variable}" if header else f"mcp:{server}:{variable}"


# -- reading ------------------------------------------------------------------------


def parse_server(name: str, body: Any) -> tuple[ServerConfig | None, list[tuple[str, str]]]:
    """The server of one ``[mcp.servers.NAME]`` table, and the problems found as
    (key, sentence). No server when it cannot run (no command or url, a bad name)."""
    where = f"mcp.servers.{name}"
    problems: list[tuple[str, str]] = []
    if not SERVER_NAME.fullmatch(name):
        reason = "a server name is 1 to 64 letters, digits, - or _; this server is not used"
        return None, [(where, reason)]
    if not isinstance(body, dict):
        return None, [(where, "must be a table; this server is not used")]
    for key in body:
        if key not in _SERVER_KEYS:
            problems.append((f"{where}.{key}", "unknown key"))
    command = body.get("command", "")
    url = body.get("url", "")
    if not isinstance(command, str) or not isinstance(url, str):
        return None, [*problems, (where, "command and url must be text; this server is not used")]
    command, url = command.strip(), url.strip()
    if bool(command) == bool(url):
        reason = "needs either command (a stdio server) or url (Streamable HTTP); it is not used"
        return None, [*problems, (where, reason)]
    if url:
        try:
            check_base_url(url)
        except ValueError as exc:
            return None, [*problems, (f"{where}.url", f"{exc}; this server is not used")]
    args = _strings(body.get("args", []), f"{where}.args", problems)
    env = _table(body.get("env", {}), f"{where}.env", problems)
    headers = _table(body.get("headers", {}), f"{where}.headers", problems)
    cwd = body.get("cwd", "")
    if not isinstance(cwd, str):
        problems.append((f"{where}.cwd", f"expected text, got {cwd!r}; using none"))
        cwd = ""
    timeout = body.get("timeout_s", DEFAULT_TIMEOUT_S)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or not 0 < timeout <= MAX_TIMEOUT_S
    ):
        reason = f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}"
        problems.append((f"{where}.timeout_s", f"{reason}, got {timeout!r}; using 60"))
        timeout = DEFAULT_TIMEOUT_S
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(
            (f"{where}.enabled", f"expected true or false, got {enabled!r}; using true")
        )
        enabled = True
    policies = _policies(body.get("tools", {}), f"{where}.tools", problems)
    server = ServerConfig(
        name=name,
        command=command,
        args=tuple(args),
        env=env,
        cwd=cwd.strip(),
        url=url,
        headers=headers,
        timeout_s=float(timeout),
        enabled=enabled,
        policies=policies,
    )
    return server, problems


def _strings(value: Any, where: str, problems: list[tuple[str, str]]) -> list[str]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    problems.append((where, f"expected a list of text, got {value!r}; using none"))
    return []


def _table(value: Any, where: str, problems: list[tuple[str, str]]) -> dict[str, str]:
    if not isinstance(value, dict):
        problems.append((where, "expected a table of names and text; using none"))
        return {}
    clean: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, str) and k and "=" not in k and "\0" not in k + v:
            clean[k] = v
        else:
            problems.append((f"{where}.{k}", "expected a name and a text value; left out"))
    return clean


def _policies(value: Any, where: str, problems: list[tuple[str, str]]) -> dict[str, Policy]:
    if not isinstance(value, dict):
        problems.append((where, "expected one table per tool; every tool asks"))
        return {}
    policies: dict[str, Policy] = {}
    for tool, body in value.items():
        policy = body.get("policy", "ask") if isinstance(body, dict) else body
        for key in body if isinstance(body, dict) else ():
            if key != "policy":
                problems.append((f"{where}.{tool}.{key}", "unknown key"))
        if policy in POLICIES:
            policies[tool] = policy
        else:
            choices = ", ".join(POLICIES)
            reason = f"expected one of {choices}, got {policy!r}; using ask"
            problems.append((f"{where}.{tool}.policy", reason))
    return policies


def check_mcp_table(table: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every problem of an ``[mcp]`` table, as (key, sentence)."""
    problems: list[tuple[str, str]] = []
    for key in table:
        if key != "servers":
            problems.append((f"mcp.{key}", "unknown key"))
    servers = table.get("servers", {})
    if not isinstance(servers, dict):
        return [*problems, ("mcp.servers", "must hold one table per server")]
    for name, body in servers.items():
        problems.extend(parse_server(name, body)[1])
    return problems


def server_configs(config: Config) -> list[ServerConfig]:
    """Every server the config describes well enough to run, in the file's order."""
    servers = config.mcp.get("servers", {})
    if not isinstance(servers, dict):
        return []
    found = (parse_server(name, body)[0] for name, body in servers.items())
    return [s for s in found if s is not None]


def server_config(config: Config, name: str) -> ServerConfig | None:
    return next((s for s in server_configs(config) if s.name == name), None)


# -- changing -----------------------------------------------------------------------


def server_table(server: ServerConfig) -> dict[str, Any]:
    """The table the file holds for ``server`` (only what differs from the defaults)."""
    table: dict[str, Any] = {}
    if server.url:
        table["url"] = server.url
        if server.headers:
            table["headers"] = dict(server.headers)
    else:
        table["command"] = server.command
        table["args"] = list(server.args)
        if server.env:
            table["env"] = dict(server.env)
        if server.cwd:
            table["cwd"] = server.cwd
    if server.timeout_s != DEFAULT_TIMEOUT_S:
        table["timeout_s"] = server.timeout_s
    if not server.enabled:
        table["enabled"] = False
    if server.policies:
        table["tools"] = {tool: {"policy": p} for tool, p in server.policies.items()}
    return table


def _servers_table(config: Config) -> dict[str, Any]:
    servers = config.mcp.setdefault("servers", {})
    if not isinstance(servers, dict):
        raise ConfigError(
            "The [mcp.servers] part of the config file is not a table of servers.",
            action="Fix it in the config file, then try again.",
        )
    return servers


def _server_body(config: Config, name: str) -> dict[str, Any]:
    body = _servers_table(config).get(name)
    if not isinstance(body, dict):
        raise ConfigError(f"There is no MCP server '{name}' in the config.")
    return body


def add_server(
    config: Config, server: ServerConfig, secrets: Secrets | None, *, replacing: str | None = None
) -> ServerConfig:
    """Add ``server`` (or replace the one of that name, or the server ``replacing`` when it is
    renamed) and save the config.

    Secret env values and headers go to the keychain through ``secrets`` first; the file gets
    :data:`KEYCHAIN_REF` in their place (a value that already is the reference keeps the
    secret stored for it, moved along on a rename). Secrets the server no longer uses are
    removed from the keychain. Returns the server as the file now holds it. Raises
    ``ConfigError`` (nothing changed in the file) when a secret cannot be stored.
    """
    if not SERVER_NAME.fullmatch(server.name):
        raise ConfigError(
            f"'{server.name}' cannot name a server.",
            action="Use 1 to 64 letters, digits, - or _.",
        )
    previous = replacing or server.name
    table = _servers_table(config)
    stale = _keychain_refs(previous, table.get(previous))
    env = _store_secrets(server.name, server.env, secrets, previous, header=False)
    headers = _store_secrets(server.name, server.headers, secrets, previous, header=True)
    stored = replace(server, env=env, headers=headers, policies=dict(server.policies))
    if previous != server.name:
        table.pop(previous, None)
    table[server.name] = server_table(stored)
    save_config(config)
    if secrets is not None:
        for name in stale - _keychain_refs(server.name, table[server.name]):
            secrets.delete_secret(name)
    return stored


def _store_secrets(
    server: str,
    values: Mapping[str, str],
    secrets: Secrets | None,
    previous: str,
    *,
    header: bool,
) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name, value in values.items():
        if value == KEYCHAIN_REF and previous != server and secrets is not None:
            moved = secrets.get_secret(keychain_name(previous, name, header=header))
            if moved is not None:
                _store_secret(server, name, moved, secrets, header=header)
        if not is_secret_name(name) or value in ("", KEYCHAIN_REF):
            kept[name] = value
            continue
        _store_secret(server, name, value, secrets, header=header)
        kept[name] = KEYCHAIN_REF
    return kept


def _store_secret(
    server: str, name: str, value: str, secrets: Secrets | None, *, header: bool
) -> None:
    if secrets is None:
        raise ConfigError(f"Rill has no keychain to store {name} of server '{server}' in.")
    what = "header" if header else "environment variable"
    secrets.set_secret(
        keychain_name(server, name, header=header),
        value,
        alternative=f"Write the {what} {name} into the server's table in the config file "
        "yourself (Rill never writes a secret to a file).",
    )


def _keychain_refs(server: str, body: Any) -> set[str]:
    """The keychain names of the secrets a server's table refers to."""
    refs: set[str] = set()
    if not isinstance(body, dict):
        return refs
    for key, header in (("env", False), ("headers", True)):
        values = body.get(key)
        for variable, value in values.items() if isinstance(values, dict) else ():
            if value == KEYCHAIN_REF:
                refs.add(keychain_name(server, variable, header=header))
    return refs


def remove_server(config: Config, name: str, secrets: Secrets | None) -> None:
    """Remove server ``name``, and its secrets from the keychain; save the config."""
    body = _servers_table(config).pop(name, None)
    save_config(config)
    if secrets is not None:
        for secret in _keychain_refs(name, body):
            secrets.delete_secret(secret)


def set_tool_policy(config: Config, server: str, tool: str, policy: Policy) -> None:
    """Set one tool's policy and save (a running server is not touched)."""
    if policy not in POLICIES:
        raise ValueError(f"a policy is one of {', '.join(POLICIES)}, not {policy!r}")
    body = _server_body(config, server)
    tools = body.get("tools")
    if not isinstance(tools, dict):
        tools = body["tools"] = {}
    entry = tools.get(tool)
    if not isinstance(entry, dict):
        entry = tools[tool] = {}
    entry["policy"] = policy
    save_config(config)


def set_server_enabled(config: Config, server: str, enabled: bool) -> None:
    """Turn server ``server`` on or off and save."""
    body = _server_body(config, server)
    if enabled:
        body.pop("enabled", None)
    else:
        body["enabled"] = False
    save_config(config)


def resolve_secrets(
    server: ServerConfig, secrets: Secrets | None
) -> tuple[dict[str, str], dict[str, str]]:
    """The server's env and headers with each :data:`KEYCHAIN_REF` replaced by the secret.

    Raises ``ConfigError`` naming the missing secret.
    """

    def resolve(values: Mapping[str, str], header: bool) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in values.items():
            if value != KEYCHAIN_REF:
                out[name] = value
                continue
            secret = (
                secrets.get_secret(keychain_name(server.name, name, header=header))
                if secrets
                else None
            )
            if secret is None:
                raise ConfigError(
                    f"The value of {name} for the MCP server '{server.name}' is not in the "
                    "system keychain.",
                    action="Enter it again in Settings → Tools.",
                )
            out[name] = secret
        return out

    return resolve(server.env, False), resolve(server.headers, True)


# -- Claude Desktop -----------------------------------------------------------------


def import_claude_desktop(path: Path) -> list[ServerConfig]:
    """The servers of a Claude Desktop ``claude_desktop_config.json`` (its ``mcpServers``).

    Stdio servers have ``command``, ``args`` and ``env``; remote ones ``url`` (with ``type``
    ``http`` or ``streamable-http``) and ``headers``. Raises ``ConfigError`` with a sentence
    when the file cannot be read or is not such a file; an entry Rill cannot use is left out
    with its reason in the error only when no entry at all can be used.
    """
    try:
        size = path.stat().st_size
        if size > CLAUDE_CONFIG_LIMIT_BYTES:
            raise ConfigError(
                f"{path} is {size:,} bytes, too large for a Claude Desktop config.",
                action="Choose the claude_desktop_config.json file.",
            )
        text = path.read_text(encoding="utf-8")
    except PermissionError:
        raise ConfigError(
            f"Rill has no permission to read {path}.",
            action="Allow reading the file, or copy it somewhere Rill can read it.",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"Rill could not read {path}.",
            action="Choose the claude_desktop_config.json file.",
            detail=str(exc),
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
            action="Fix the file in a text editor, or choose another one.",
        ) from None
    servers = doc.get("mcpServers") if isinstance(doc, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError(
            f'{path} has no "mcpServers" object, so it names no MCP server.',
            action="Choose the claude_desktop_config.json file of Claude Desktop.",
        )
    if not servers:
        raise ConfigError(
            f'The "mcpServers" object of {path} is empty: the file names no MCP server.',
            action="Add servers in Claude Desktop first, or add them here in Settings → Tools.",
        )
    found: list[ServerConfig] = []
    reasons: list[str] = []
    for raw_name, entry in servers.items():
        server, reason = _claude_server(str(raw_name), entry)
        if server is not None:
            found.append(server)
        else:
            reasons.append(f"'{raw_name}': {reason}")
    if not found and reasons:
        raise ConfigError(
            f"No server of {path} can be used: {'; '.join(reasons)}.",
            action="Fix the file, or add the servers in Settings → Tools.",
        )
    return found


def _claude_server(raw_name: str, entry: Any) -> tuple[ServerConfig | None, str]:
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", raw_name).strip("-")[:64] or "server"
    if not isinstance(entry, dict):
        return None, "is not an object"
    problems: list[tuple[str, str]] = []
    body: dict[str, Any] = {}
    if isinstance(entry.get("url"), str):
        kind = entry.get("type", "http")
        if kind not in ("http", "streamable-http", "streamableHttp"):
            return None, f"its type {kind!r} is not Streamable HTTP (Rill speaks stdio and HTTP)"
        body["url"] = entry["url"]
        body["headers"] = _table(entry.get("headers", {}), "headers", problems)
    elif isinstance(entry.get("command"), str):
        body["command"] = entry["command"]
        body["args"] = entry.get("args", [])
        env = entry.get("env") or {}
        if not isinstance(env, dict):
            return None, "its env is not an object"
        body["env"] = {str(k): str(v) for k, v in env.items()}
        if isinstance(entry.get("cwd"), str):
            body["cwd"] = entry["cwd"]
    else:
        return None, "has neither a command nor a url"
    server, problems = parse_server(name, body)
    if server is None:
        return None, problems[-1][1] if problems else "cannot be used"
    return server, ""


def unique_name(name: str, taken: Iterable[str]) -> str:
    """``name``, or ``name-2``, ``name-3``… when it is taken."""
    names = set(taken)
    if name not in names:
        return name
    k = 2
    while f"{name}-{k}"[:64] in names:
        k += 1
    return f"{name}-{k}"[:64]
