"""Rill's settings: one schema, declared once, used by the loader, the settings dialog and
the docs. The file is TOML in the user config folder; a broken file never stops Rill."""

from __future__ import annotations

import copy
import ipaddress
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from desktop_app.core.routing.profile import AutoSettings, auto_to_toml, parse_auto
from desktop_app.core.types import PROVIDERS, ProviderName

BUILT_IN_PROFILE = "default"
"""The profile that exists without being set up: OpenAI's API, its key from the environment."""


@dataclass(frozen=True, slots=True)
class Key:
    path: str
    type: type
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    """What a person reads for each of ``choices``, in the same order (the file keeps the value)."""
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], None] | None = None
    """Raises ValueError (with the reason) when a value of the right type is still wrong."""

    def label(self, value: str) -> str:
        """The human name of one of ``choices`` (the value itself when it has none)."""
        if value in self.choices and len(self.labels) == len(self.choices):
            return self.labels[self.choices.index(value)]
        return value


_PLAIN_URL = re.compile(
    r"(https?)://([a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)(?::([0-9]{1,5}))?(/[A-Za-z0-9._~/-]*)?",
    re.ASCII,
)
"""An address of a plain form: lower-case scheme and host name of letters, digits, dots and
hyphens, a port, a path of unreserved characters. httpx reads such an address as it is."""
_IPV4_STYLE = re.compile(r"^[0-9]+.[0-9]+.[0-9]+.[0-9]+$")
"""httpx's own test for a host it checks as an IPv4 address (its dots match any character)."""


def plain_url_parts(url: str) -> tuple[str, str, int | None] | None:
    """Scheme, host and port of an address of the plain form, read without httpx; None
    for any other address (see :func:`url_parts`)."""
    plain = _PLAIN_URL.fullmatch(url)
    if plain is None:
        return None
    scheme, host, port = plain[1], plain[2], plain[3]
    if _IPV4_STYLE.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return None  # httpx refuses it, in its own words
    number = None if port is None else int(port)
    if number == {"http": 80, "https": 443}[scheme]:
        number = None  # as httpx: a scheme's own port is no port
    return scheme, host, number


def url_parts(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of ``url`` as httpx reads it; ValueError, with httpx's reason,
    when httpx refuses it. Plain addresses (a profile's usual ``http://127.0.0.1:8080/v1``)
    are read without importing httpx, which the window's first frame does not need."""
    parts = plain_url_parts(url)
    if parts is not None:
        return parts
    import httpx

    try:
        parsed = httpx.URL(url)
        return parsed.scheme, parsed.host, parsed.port
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None


def check_base_url(url: str) -> None:
    """Raise ValueError, with a sentence, unless ``url`` is empty or an http(s) address
    with a host (and a port from 1 to 65535, when it has one)."""
    if not url:
        return
    try:
        scheme, host, port = url_parts(url)
    except ValueError as exc:
        raise ValueError(f"'{url}' is not a valid address ({exc})") from None
    if scheme not in ("http", "https"):
        raise ValueError(f"'{url}' is not an http:// or https:// address")
    if not host:
        raise ValueError(f"'{url}' has no host name")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"'{url}' has port {port}; a port is a number from 1 to 65535")


SCHEMA: tuple[Key, ...] = (
    Key("default_profile", str, BUILT_IN_PROFILE, "The profile new chats and `q` use."),
    Key("resilience.max_retries", int, 3, "Retries after the first attempt fails.", minimum=0),
    Key("resilience.base_delay_s", float, 1.0, "First backoff delay, in seconds.", minimum=0),
    Key("resilience.max_delay_s", float, 60.0, "Longest backoff delay, in seconds.", minimum=0),
    Key(
        "resilience.wait_on_rate_limit",
        bool,
        True,
        "Wait out a rate limit longer than max_rate_limit_wait_s (with a countdown).",
    ),
    Key(
        "resilience.max_rate_limit_wait_s",
        float,
        120.0,
        "Longest server-requested wait taken without asking.",
        minimum=0,
    ),
    Key("resilience.connect_timeout_s", float, 10.0, "Time to open a connection.", minimum=0.001),
    Key(
        "resilience.first_token_timeout_s",
        float,
        600.0,
        "Time to the first token (reasoning models think for minutes).",
        minimum=0.001,
    ),
    Key(
        "resilience.idle_timeout_s",
        float,
        60.0,
        "Longest gap between two chunks before the stream counts as stalled.",
        minimum=0.001,
    ),
    Key(
        "resilience.mid_stream",
        str,
        "restart",
        "What to do when a stream breaks after text was shown.",
        choices=("restart", "continue", "off"),
        labels=("Start the answer again", "Continue the answer", "Keep the partial answer"),
    ),
    Key(
        "resilience.circuit_breaker.failure_threshold",
        int,
        5,
        "Consecutive failures that open an endpoint's circuit.",
        minimum=1,
    ),
    Key(
        "resilience.circuit_breaker.recovery_timeout_s",
        float,
        300.0,
        "How long an open circuit fails fast before one trial request.",
        minimum=0,
    ),
    Key(
        "resilience.max_reply_mb",
        float,
        8.0,
        "Longest reply kept, in MB of text: a longer one is ended, keeping what arrived.",
        minimum=0.001,
    ),
    Key("cache.enabled", bool, True, "Answer repeated questions from the on-disk cache."),
    Key("cache.ttl_s", float, 86400.0, "How long a cached answer stays valid.", minimum=0),
    Key("cache.size_limit_mb", int, 256, "Largest size of the cache on disk.", minimum=1),
    Key("history.enabled", bool, True, "Record conversations."),
    Key(
        "auto.route_cache_ttl_s",
        float,
        3600.0,
        "How long Auto remembers where it sent a question, in seconds.",
        minimum=0,
    ),
    Key(
        "auto.route_cache_entries",
        int,
        100,
        "Most routes Auto remembers (the least recently used go first).",
        minimum=1,
    ),
    Key(
        "tools.max_rounds",
        int,
        10,
        "Most rounds of tool calls in one reply before Rill stops and says so.",
        minimum=1,
        maximum=1000,
    ),
    Key(
        "budget.monthly_usd",
        float,
        0.0,
        "Monthly spending limit in US dollars; 0 means none.",
        minimum=0,
    ),
    Key(
        "ui.theme",
        str,
        "system",
        "Colour scheme.",
        choices=("system", "light", "dark"),
        labels=("System", "Light", "Dark"),
    ),
    Key(
        "ui.send_with",
        str,
        "enter",
        "Enter sends (Shift+Enter breaks the line), or Ctrl+Enter sends.",
        choices=("enter", "ctrl+enter"),
        labels=("Enter sends", "Ctrl+Enter sends"),
    ),
)
SCHEMA_BY_PATH: dict[str, Key] = {k.path: k for k in SCHEMA}

PROFILE_SCHEMA: tuple[Key, ...] = (
    Key(
        "provider",
        str,
        "openai",
        "Wire protocol.",
        choices=PROVIDERS,
        labels=("OpenAI-compatible", "Ollama", "Anthropic", "Gemini"),
    ),
    Key(
        "base_url",
        str,
        "",
        "Server address (OpenAI's includes /v1); empty for the default.",
        check=check_base_url,
    ),
    Key("model", str, "", "Model name."),
    Key("system_prompt", str, "", "System prompt for new chats."),
    Key(
        "temperature",
        float,
        -1.0,
        "Sampling temperature (0 to 2); negative means the server's default.",
        maximum=2.0,
    ),
    Key(
        "max_tokens",
        int,
        0,
        "Most tokens in a reply; 0 means the server's default.",
        minimum=0,
        maximum=10_000_000,
    ),
    Key("fallbacks", list, [], "Models or profiles to try, in order, when this one fails."),
    Key("accepts_prefill", bool, False, "The server continues a partial assistant turn."),
    Key(
        "stream",
        bool,
        True,
        "Stream replies; false asks for each whole answer at once (servers that stream badly).",
    ),
    Key(
        "price_input_per_mtok",
        float,
        -1.0,
        "US dollars per million input tokens; negative: the price list (0 on this computer).",
    ),
    Key(
        "price_output_per_mtok",
        float,
        -1.0,
        "US dollars per million output tokens; negative: the price list (0 on this computer).",
    ),
)
PROFILE_SCHEMA_BY_NAME: dict[str, Key] = {k.path: k for k in PROFILE_SCHEMA}

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "ollama": "http://127.0.0.1:11434",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-4o-mini",
    "ollama": "llama3.2",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
}


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    provider: ProviderName = "openai"
    base_url: str = ""
    model: str = ""
    system_prompt: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    fallbacks: tuple[str, ...] = ()
    accepts_prefill: bool = False
    stream: bool = True
    price_input_per_mtok: float | None = None
    """The profile's own price (US dollars per million tokens); None: not set."""
    price_output_per_mtok: float | None = None
    auto: AutoSettings | None = None
    """For a ``kind = "auto"`` profile, its targets and checks; it then has no server."""

    @property
    def resolved_base_url(self) -> str:
        return self.base_url or DEFAULT_BASE_URLS[self.provider]

    @property
    def resolved_model(self) -> str:
        if self.auto is not None:
            return "Auto"
        return self.model or DEFAULT_MODELS[self.provider]


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong in the config file: where, and why the default is used instead."""

    file: str
    key: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.reason}"


@dataclass(slots=True)
class Config:
    values: dict[str, Any] = field(default_factory=lambda: {k.path: k.default for k in SCHEMA})
    profiles: dict[str, Profile] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    path: Path | None = None
    mcp: dict[str, Any] = field(default_factory=dict)
    """The ``[mcp]`` tables as the file holds them (MCP servers: see
    :mod:`desktop_app.core.tools.config`), kept whole so that saving loses nothing."""

    def __post_init__(self) -> None:
        for profile in self.profiles.values():
            check_profile(profile)

    def __getitem__(self, path: str) -> Any:
        return self.values[path]

    def profile(self, name: str | None = None) -> Profile:
        name = name or str(self.values["default_profile"])
        if name in self.profiles:
            return self.profiles[name]
        return Profile(name=name)

    def named_profile(self, name: str) -> Profile:
        """The profile ``name`` as a user chose it; ValueError when there is none by that name.

        Besides the profiles of the config file there is always ``default``, the built-in
        profile (OpenAI's API with its key from the environment) used while the file
        sets up no profile of that name.
        """
        if name in self.profiles or name == BUILT_IN_PROFILE:
            return self.profile(name)
        raise ValueError(unknown_profile(name, self.profiles, self.path))

    def set(self, path: str, raw: Any, *, source: str = "--set") -> None:
        """Set one key from a value (or the text of a TOML value); raise ValueError when invalid."""
        value = parse_value(raw) if isinstance(raw, str) else raw
        if path.startswith("profiles."):
            _, _, rest = path.partition(".")
            name, _, leaf = rest.rpartition(".")
            if not name or leaf not in PROFILE_SCHEMA_BY_NAME:
                raise ValueError(f"unknown profile key '{path}'")
            if self.profile(name).auto is not None:
                raise ValueError(
                    f"'{name}' is an Auto profile; change its targets and checks in the "
                    "config file or in Settings"
                )
            current = _profile_to_dict(self.profile(name))
            current[leaf] = _coerce(PROFILE_SCHEMA_BY_NAME[leaf], value)
            self.profiles[name] = _profile_from_dict(name, current)
            return
        key = SCHEMA_BY_PATH.get(path)
        if key is None:
            raise ValueError(f"unknown key '{path}'")
        self.values[path] = _coerce(key, value)

    def to_toml(self) -> dict[str, Any]:
        """The config as the file holds it: only the values that differ from the defaults
        (a profile always names its provider), so the file stays short and readable."""
        doc: dict[str, Any] = {}
        for k in SCHEMA:
            value = self.values[k.path]
            if value != k.default:
                _put(doc, k.path, value)
        if self.profiles:
            doc["profiles"] = {name: _profile_to_toml(p) for name, p in self.profiles.items()}
        if self.mcp:
            doc["mcp"] = copy.deepcopy(self.mcp)
        return doc


def unknown_profile(name: str, profiles: Iterable[str], path: Path | None = None) -> str:
    """The sentence for a profile name that names no profile, with the names that do."""
    names = sorted({*profiles, BUILT_IN_PROFILE})
    where = f" in {path}" if path is not None else " in the config file"
    if names == [BUILT_IN_PROFILE]:
        known = f"there is only the built-in profile '{BUILT_IN_PROFILE}'"
    else:
        known = "the profiles are " + ", ".join(f"'{n}'" for n in names)
    return (
        f"There is no profile '{name}'; {known} (add one as [profiles.{name}]{where}, "
        "or in Settings)"
    )


def check_profile(profile: Profile) -> None:
    """Raise ValueError (naming the key) if a value of ``profile`` breaks the schema."""
    values = _profile_to_dict(profile)
    for name, key in PROFILE_SCHEMA_BY_NAME.items():
        try:
            _coerce(key, values[name])
        except ValueError as exc:
            raise ValueError(f"profiles.{profile.name}.{name}: {exc}") from None


def parse_value(text: str) -> Any:
    """A value as TOML reads it (``3``, ``true``, ``"x"``, ``[..]``), else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _coerce(key: Key, value: Any) -> Any:
    """The value checked against its key's type, choices, range and check.

    Numbers must be finite: ``nan`` and ``inf`` are refused for every number.
    """
    if key.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if key.type is list and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if key.type is bool and not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    if not isinstance(value, key.type) or (key.type is int and isinstance(value, bool)):
        raise ValueError(f"expected {key.type.__name__}, got {value!r}")
    if key.choices and value not in key.choices:
        raise ValueError(f"expected one of {', '.join(key.choices)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value!r}")
    if key.minimum is not None and isinstance(value, int | float) and value < key.minimum:
        raise ValueError(f"must be at least {key.minimum}, got {value!r}")
    if key.maximum is not None and isinstance(value, int | float) and value > key.maximum:
        raise ValueError(f"must be at most {key.maximum}, got {value!r}")
    if key.check is not None:
        key.check(value)
    if isinstance(value, list):
        return [str(v) for v in value]
    return value


_WHOLE_TABLES = ("profiles", "mcp")
"""Tables read as a whole rather than key by key."""


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        doc = doc.setdefault(p, {})
    doc[leaf] = value


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in doc.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and path not in _WHOLE_TABLES:
            yield from _flatten(v, path + ".")
        else:
            yield path, v


def _profile_to_dict(p: Profile) -> dict[str, Any]:
    return {
        "provider": p.provider,
        "base_url": p.base_url,
        "model": p.model,
        "system_prompt": p.system_prompt,
        "temperature": -1.0 if p.temperature is None else p.temperature,
        "max_tokens": p.max_tokens or 0,
        "fallbacks": list(p.fallbacks),
        "accepts_prefill": p.accepts_prefill,
        "stream": p.stream,
        "price_input_per_mtok": _unset(p.price_input_per_mtok),
        "price_output_per_mtok": _unset(p.price_output_per_mtok),
    }


def _profile_to_toml(p: Profile) -> dict[str, Any]:
    """A profile's table in the file: its provider, then what differs from the defaults."""
    if p.auto is not None:
        return auto_to_toml(p.auto)
    values = _profile_to_dict(p)
    table: dict[str, Any] = {"provider": values["provider"]}
    for name, key in PROFILE_SCHEMA_BY_NAME.items():
        if name != "provider" and values[name] != key.default:
            table[name] = values[name]
    return table


def _unset(price: float | None) -> float:
    return -1.0 if price is None else price


def _price_or_none(value: Any) -> float | None:
    price = float(value)
    return None if price < 0 else price


def _profile_from_dict(name: str, d: Mapping[str, Any]) -> Profile:
    temperature = float(d.get("temperature", -1.0))
    return Profile(
        name=name,
        provider=d.get("provider", "openai"),
        base_url=str(d.get("base_url", "")),
        model=str(d.get("model", "")),
        system_prompt=str(d.get("system_prompt", "")),
        temperature=None if temperature < 0 else temperature,
        max_tokens=int(d.get("max_tokens", 0)) or None,
        fallbacks=tuple(d.get("fallbacks", ())),
        accepts_prefill=bool(d.get("accepts_prefill", False)),
        stream=bool(d.get("stream", True)),
        price_input_per_mtok=_price_or_none(d.get("price_input_per_mtok", -1.0)),
        price_output_per_mtok=_price_or_none(d.get("price_output_per_mtok", -1.0)),
    )


def _line_of(text: str, key: str) -> int | None:
    leaf = key.rsplit(".", 1)[-1]
    pattern = re.compile(rf"^\s*[\"']?{re.escape(leaf)}[\"']?\s*=", re.M)
    m = pattern.search(text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def load_config(path: Path) -> Config:
    """Read the config file. Invalid keys keep their defaults and are listed in ``problems``."""
    config = Config(path=path)
    if not path.exists():
        return config
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        line = None
        m = re.search(r"line (\d+)", str(exc))
        if m:
            line = int(m.group(1))
        config.problems.append(
            Problem(file, "(whole file)", line, f"cannot be read ({exc}); using defaults")
        )
        return config
    for path_, value in _flatten(doc):
        if path_ == "profiles":
            _load_profiles(config, value, text, file)
            continue
        if path_ == "mcp":
            _load_mcp(config, value, text, file)
            continue
        key = SCHEMA_BY_PATH.get(path_)
        if key is None:
            config.problems.append(Problem(file, path_, _line_of(text, path_), "unknown key"))
            continue
        try:
            config.values[path_] = _coerce(key, value)
        except ValueError as exc:
            config.problems.append(
                Problem(file, path_, _line_of(text, path_), f"{exc}; using {key.default!r}")
            )
    default = str(config.values["default_profile"])
    if default not in config.profiles and default != BUILT_IN_PROFILE:
        names = ", ".join(f"'{n}'" for n in sorted({*config.profiles, BUILT_IN_PROFILE}))
        config.problems.append(
            Problem(
                file,
                "default_profile",
                _line_of(text, "default_profile"),
                f"there is no profile '{default}' (the profiles are {names}); "
                f"using '{BUILT_IN_PROFILE}'",
            )
        )
        config.values["default_profile"] = BUILT_IN_PROFILE
    return config


def _load_profiles(config: Config, table: Any, text: str, file: str) -> None:
    if not isinstance(table, dict):
        config.problems.append(Problem(file, "profiles", None, "must be a table of profiles"))
        return
    for name, body in table.items():
        if not isinstance(body, dict):
            config.problems.append(Problem(file, f"profiles.{name}", None, "must be a table"))
            continue
        if "kind" in body:
            kind = body["kind"]
            if kind == "auto":
                settings, problems = parse_auto(body)
                for where, reason in problems:
                    line = _line_of(text, where.split("[")[0].split(".")[0])
                    config.problems.append(Problem(file, f"profiles.{name}.{where}", line, reason))
                config.profiles[name] = Profile(name=name, auto=settings)
                continue
            config.problems.append(
                Problem(
                    file,
                    f"profiles.{name}.kind",
                    _line_of(text, "kind"),
                    f'unknown kind {kind!r} (the only kind is "auto"); read as an ordinary profile',
                )
            )
            body = {k: v for k, v in body.items() if k != "kind"}
        clean: dict[str, Any] = {}
        for leaf, value in body.items():
            key = PROFILE_SCHEMA_BY_NAME.get(leaf)
            full = f"profiles.{name}.{leaf}"
            if key is None:
                config.problems.append(Problem(file, full, _line_of(text, leaf), "unknown key"))
                continue
            try:
                clean[leaf] = _coerce(key, value)
            except ValueError as exc:
                config.problems.append(
                    Problem(file, full, _line_of(text, leaf), f"{exc}; using {key.default!r}")
                )
        config.profiles[name] = _profile_from_dict(name, clean)
    _check_auto_targets(config, text, file)


def _check_auto_targets(config: Config, text: str, file: str) -> None:
    """Drop (with a problem each) the targets, judge and classifier of Auto profiles that
    name no ordinary profile."""

    for name, profile in list(config.profiles.items()):
        auto = profile.auto
        if auto is None:
            continue

        def usable(other: str) -> bool:
            found = config.profiles.get(other)
            return (found is None and other == BUILT_IN_PROFILE) or (
                found is not None and found.auto is None
            )

        targets = []
        for target in auto.targets:
            if usable(target.profile):
                targets.append(target)
            else:
                config.problems.append(
                    Problem(
                        file,
                        f"profiles.{name}.targets",
                        _line_of(text, "targets"),
                        f"target {target.profile!r} is not an ordinary profile; left out",
                    )
                )
        changes: dict[str, Any] = {"targets": tuple(targets)}
        for key in ("judge", "classifier"):
            other = getattr(auto, key)
            if other and not usable(other):
                config.problems.append(
                    Problem(
                        file,
                        f"profiles.{name}.{key}",
                        _line_of(text, key),
                        f"{other!r} is not an ordinary profile; using "
                        + ("the cheapest target" if key == "judge" else "the heuristic only"),
                    )
                )
                changes[key] = ""
        config.profiles[name] = replace(profile, auto=replace(auto, **changes))


def _load_mcp(config: Config, table: Any, text: str, file: str) -> None:
    # The MCP schema lives with the MCP client, which itself reads Config.
    from desktop_app.core.tools.config import check_mcp_table

    if not isinstance(table, dict):
        config.problems.append(
            Problem(file, "mcp", _line_of(text, "mcp"), "must be a table ([mcp.servers.NAME])")
        )
        return
    config.mcp = copy.deepcopy(table)
    for key, reason in check_mcp_table(table):
        config.problems.append(Problem(file, key, _line_of(text, key), reason))


def save_config(config: Config, path: Path | None = None) -> Path:
    """Write atomically: a temporary file in the same folder, then a rename."""
    target = path or config.path
    if target is None:
        raise ValueError("no path to save the config to")
    target.parent.mkdir(parents=True, exist_ok=True)
    data = tomli_w.dumps(config.to_toml())
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def describe_schema() -> str:
    """The schema as a Markdown table, for the docs."""
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for k in SCHEMA:
        choice = f" One of: {', '.join(k.choices)}." if k.choices else ""
        rows.append(
            f"| `{k.path}` | {k.type.__name__} | `{k.default!r}` | {k.description}{choice} |"
        )
    for k in PROFILE_SCHEMA:
        rows.append(
            f"| `profiles.NAME.{k.path}` | {k.type.__name__} | `{k.default!r}` | {k.description} |"
        )
    return "\n".join(rows)
