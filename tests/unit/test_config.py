from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from desktop_app.core.config import (
    PROFILE_SCHEMA,
    PROFILE_SCHEMA_BY_NAME,
    SCHEMA,
    SCHEMA_BY_PATH,
    Config,
    Key,
    Profile,
    check_base_url,
    describe_schema,
    load_config,
    plain_url_parts,
    save_config,
    url_parts,
)


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "nope.toml")
    assert config.problems == []
    assert config["resilience.max_retries"] == 3
    assert config["resilience.mid_stream"] == "restart"
    assert config["resilience.circuit_breaker.failure_threshold"] == 5


def test_invalid_keys_fall_back_and_are_reported_with_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[resilience]\n"
        "max_retries = 5\n"
        'idle_timeout_s = "soon"\n'
        'mid_stream = "sometimes"\n'
        "bogus = 1\n"
        "[profiles.work]\n"
        'provider = "anthropic"\n'
        "temperature = 0.2\n"
        'provider_typo = "x"\n'
    )
    config = load_config(path)
    assert config["resilience.max_retries"] == 5
    assert config["resilience.idle_timeout_s"] == 60.0
    assert config["resilience.mid_stream"] == "restart"
    reported = {(p.key, p.line) for p in config.problems}
    assert ("resilience.idle_timeout_s", 3) in reported
    assert ("resilience.mid_stream", 4) in reported
    assert ("resilience.bogus", 5) in reported
    assert ("profiles.work.provider_typo", 9) in reported
    assert all(str(path) in str(p) for p in config.problems)
    work = config.profile("work")
    assert work.provider == "anthropic"
    assert work.temperature == 0.2
    assert work.resolved_base_url == "https://api.anthropic.com"


def test_unparseable_file_is_reported_and_defaults_used(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[resilience\nmax_retries = = 3\n")
    config = load_config(path)
    assert config["resilience.max_retries"] == 3
    assert len(config.problems) == 1
    assert config.problems[0].line == 1
    assert "cannot be read" in config.problems[0].reason
    assert path.read_text().startswith("[resilience")  # the user's file is left alone


def test_set_parses_toml_values_and_rejects_bad_ones() -> None:
    config = Config()
    config.set("resilience.idle_timeout_s", "3")
    assert config["resilience.idle_timeout_s"] == 3.0
    config.set("resilience.wait_on_rate_limit", "false")
    assert config["resilience.wait_on_rate_limit"] is False
    config.set("resilience.mid_stream", "continue")
    assert config["resilience.mid_stream"] == "continue"
    config.set("profiles.local.base_url", "http://127.0.0.1:8000/v1")
    assert config.profile("local").base_url == "http://127.0.0.1:8000/v1"
    with pytest.raises(ValueError, match="unknown key"):
        config.set("resilience.nope", "1")
    with pytest.raises(ValueError, match="one of"):
        config.set("resilience.mid_stream", "maybe")
    with pytest.raises(ValueError, match="at least"):
        config.set("resilience.max_retries", "-1")


def test_save_is_atomic_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    config = Config(path=path)
    config.set("resilience.max_retries", "7")
    config.set("profiles.work.model", "claude-sonnet-4-5")
    config.set("profiles.work.provider", "anthropic")
    config.set("profiles.work.fallbacks", '["claude-haiku-4-5"]')
    save_config(config)
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]
    again = load_config(path)
    assert again.problems == []
    assert again["resilience.max_retries"] == 7
    assert again.profile("work").fallbacks == ("claude-haiku-4-5",)


def test_schema_documents_every_key() -> None:
    table = describe_schema()
    for key in SCHEMA:
        assert f"`{key.path}`" in table
        assert key.description


FLOAT_KEYS = [k.path for k in SCHEMA if k.type is float]


@pytest.mark.parametrize("path", FLOAT_KEYS)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_every_float_key_refuses_nan_and_inf(path: str, text: str) -> None:
    config = Config()
    with pytest.raises(ValueError, match="finite"):
        config.set(path, text)
    assert config[path] == SCHEMA_BY_PATH[path].default


def test_nan_in_the_file_and_in_a_profile_keeps_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[resilience]\nidle_timeout_s = nan\nbase_delay_s = inf\n"
        "[profiles.p]\ntemperature = nan\nmax_tokens = -1\nbase_url = 'http://h:99999/v1'\n",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config["resilience.idle_timeout_s"] == 60.0
    assert config["resilience.base_delay_s"] == 1.0
    profile = config.profile("p")
    assert (profile.temperature, profile.max_tokens, profile.base_url) == (None, None, "")
    reasons = " ".join(str(p) for p in config.problems)
    assert "finite" in reasons and "at least 0" in reasons and "65535" in reasons


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://h:99999", "http://h:0/v1", "ftp://h/v1", "http:///v1", "localhost:80"],
)
def test_a_bad_base_url_is_refused_with_a_sentence(url: str) -> None:
    with pytest.raises(ValueError, match=r"address|port|host"):
        check_base_url(url)
    with pytest.raises(ValueError):
        Config().set("profiles.p.base_url", url)


@pytest.mark.parametrize(
    "url", ["", "http://127.0.0.1:8080/v1", "https://api.openai.com/v1", "http://[::1]:11434"]
)
def test_good_base_urls_pass(url: str) -> None:
    check_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1",
        "http://localhost:11434",
        "https://api.openai.com/v1",
        "http://h:99999",
        "http://h:0/v1",
        "http://h:80",
        "https://h:443/",
        "http://a..b/v1",
        "http://999.1.1.1/v1",
        "http://1a2b3c4",
        "http://1234567/x",
        "http://127.000.0.1",
        "http://10.0.0.1:1234/v1/",
        "http://my-server.lan:8000/v1",
        "http://x.local/v1",
        "http://ab-/v1",
        "HTTP://Host/v1",
        "http://[::1]:11434",
        "http://h/v1?x=1",
        "http://h/caf%C3%A9",
        "http://hé.example/v1",
        "http://h /v1",
    ],
)
def test_a_plain_address_is_read_as_httpx_reads_it(url: str) -> None:
    """The window reads a profile's plain address without importing httpx; where it does,
    the result is httpx's (scheme, host, and a port httpx keeps), or httpx refuses it too."""
    import httpx

    plain = plain_url_parts(url)
    try:
        parsed = httpx.URL(url)
        expected: tuple[str, str, int | None] | None = (parsed.scheme, parsed.host, parsed.port)
    except httpx.InvalidURL:
        expected = None
        assert plain is None
    if plain is not None:
        assert plain == expected
    if expected is None:
        with pytest.raises(ValueError):
            url_parts(url)
    else:
        assert url_parts(url) == expected


def test_the_settings_dialog_config_is_validated_like_the_file() -> None:
    # the dialog builds Config(values=..., profiles=...) and shows the ValueError
    with pytest.raises(ValueError, match=r"profiles\.p\.temperature: must be a finite number"):
        Config(profiles={"p": Profile(name="p", temperature=math.nan)})
    with pytest.raises(ValueError, match=r"profiles\.p\.base_url"):
        Config(profiles={"p": Profile(name="p", base_url="http://[::1")})


def test_the_saved_file_holds_only_what_differs_from_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = Config(path=path)
    config.set("resilience.max_retries", "7")
    config.profiles["local"] = Profile(name="local", base_url="http://127.0.0.1:8080/v1")
    save_config(config)
    text = path.read_text(encoding="utf-8")
    assert tomllib.loads(text) == {
        "resilience": {"max_retries": 7},
        "profiles": {"local": {"provider": "openai", "base_url": "http://127.0.0.1:8080/v1"}},
    }
    for word in ("temperature", "max_tokens", "stream", "price_", "-1.0", "theme", "[cache]"):
        assert word not in text


def test_real_values_that_look_like_unset_ones_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = Config(path=path)
    config.profiles["p"] = Profile(
        name="p", temperature=0.0, stream=False, price_input_per_mtok=0.0
    )
    save_config(config)
    saved = tomllib.loads(path.read_text(encoding="utf-8"))["profiles"]["p"]
    assert saved == {
        "provider": "openai",
        "temperature": 0.0,
        "stream": False,
        "price_input_per_mtok": 0.0,
    }
    assert load_config(path).profiles["p"] == config.profiles["p"]


def _other_than_default(key: Key) -> Any:
    if key.choices:
        return next(c for c in key.choices if c != key.default)
    if key.type is bool:
        return not key.default
    if key.type is int:
        return int(key.default) + 1
    if key.type is float:
        return float(key.default) + 1.5
    return "somewhere else"


def test_every_key_round_trips_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = Config(path=path)
    config.profiles["somewhere else"] = Profile(name="somewhere else")
    for key in SCHEMA:
        config.set(key.path, _other_than_default(key))
    full = Profile(
        name="full",
        provider="gemini",
        base_url="http://127.0.0.1:9/v1beta",
        model="m",
        system_prompt='Be brief.\n"quoted" \\ [profiles.x]',
        temperature=1.25,
        max_tokens=512,
        fallbacks=("a", "b"),
        accepts_prefill=True,
        stream=False,
        price_input_per_mtok=0.5,
        price_output_per_mtok=2.0,
    )
    bare = Profile(name="bare")
    config.profiles.update(full=full, bare=bare)
    save_config(config)
    again = load_config(path)
    assert again.problems == []
    assert again.values == config.values
    assert again.profiles == config.profiles
    assert tomllib.loads(path.read_text(encoding="utf-8"))["profiles"]["bare"] == {
        "provider": "openai"
    }


def test_a_config_of_defaults_saves_an_almost_empty_file_that_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    save_config(Config(path=path))
    assert tomllib.loads(path.read_text(encoding="utf-8")) == {}
    again = load_config(path)
    assert again.problems == [] and again.values == Config().values


def test_every_choice_has_a_human_name() -> None:
    for key in (*SCHEMA, *PROFILE_SCHEMA):
        if key.choices:
            assert len(key.labels) == len(key.choices), key.path
            assert all(label != value for label, value in zip(key.labels, key.choices, strict=True))
    assert SCHEMA_BY_PATH["ui.send_with"].label("ctrl+enter") == "Ctrl+Enter sends"
    assert PROFILE_SCHEMA_BY_NAME["provider"].label("openai") == "OpenAI-compatible"
