"""What a reply costs by where it was answered: servers on this computer or its network are
free, a profile's own prices win, everything else comes from the price list."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_app.core.config import Config, Profile, load_config
from desktop_app.core.pricing import ModelPrice, is_local_url, profile_price, reply_cost
from desktop_app.core.types import TokenUsage

USAGE = TokenUsage(input_tokens=1_000, output_tokens=2_000)
GPT_4O = 1_000 * 2.50 / 1e6 + 2_000 * 10.00 / 1e6


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:11434",
        "http://LOCALHOST.:8080/v1",
        "http://rill.localhost/v1",
        "http://127.0.0.1:8080/v1",
        "http://127.3.4.5",
        "http://[::1]:11434",
        "http://0.0.0.0:8000/v1",
        "http://10.1.2.3:11434",
        "http://172.16.0.9",
        "http://172.31.255.254:8080",
        "https://192.168.1.20/v1",
        "http://169.254.10.10",
        "http://[fd12:3456::1]:11434",
        "http://[fe80::1]",
        "http://[::ffff:127.0.0.1]:8080",
        "http://ollama-box.local:11434",
    ],
)
def test_servers_on_this_computer_or_its_network_are_local(url: str) -> None:
    assert is_local_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https://api.openai.com/v1",
        "https://generativelanguage.googleapis.com",
        "http://localhost.example.com/v1",
        "http://mylocalhost/v1",
        "http://8.8.8.8",
        "http://172.32.0.1",
        "http://11.0.0.1",
        "http://[2606:4700::1111]",
        "not a url at all",
        "http://[::1",
    ],
)
def test_other_servers_are_not_local(url: str) -> None:
    assert not is_local_url(url)


def test_a_local_server_costs_nothing_whatever_the_model() -> None:
    for model in ("gpt-4o", "mystery-model-9000"):
        cost = reply_cost(
            provider="openai", model=model, usage=USAGE, base_url="http://127.0.0.1:8080/v1"
        )
        assert cost == 0.0


def test_a_remote_server_costs_the_price_list() -> None:
    cost = reply_cost(
        provider="openai", model="gpt-4o", usage=USAGE, base_url="https://api.openai.com/v1"
    )
    assert cost == pytest.approx(GPT_4O)
    unknown = reply_cost(
        provider="openai", model="mystery-model-9000", usage=USAGE, base_url="https://x.test"
    )
    assert unknown is None
    assert reply_cost(provider="openai", model="gpt-4o", usage=None, base_url="") is None


def test_the_price_list_hook_is_used_for_remote_servers_only() -> None:
    def hook(provider: str, model: str, usage: TokenUsage | None) -> float | None:
        return 42.0

    remote = reply_cost(
        provider="openai", model="x", usage=USAGE, base_url="https://a.test", pricing=hook
    )
    assert remote == 42.0
    local = reply_cost(
        provider="openai", model="x", usage=USAGE, base_url="http://localhost", pricing=hook
    )
    assert local == 0.0


def test_a_profile_with_its_own_prices_is_billed_with_them_anywhere() -> None:
    own = ModelPrice(input=3.0, output=7.0)
    for url in ("http://127.0.0.1:8080/v1", "https://api.openai.com/v1"):
        cost = reply_cost(provider="openai", model="gpt-4o", usage=USAGE, base_url=url, own=own)
        assert cost == pytest.approx((1_000 * 3.0 + 2_000 * 7.0) / 1e6)
    assert reply_cost(provider="openai", model="m", usage=None, base_url="", own=own) is None


def test_profile_prices_come_from_its_two_keys() -> None:
    assert profile_price(Profile(name="p")) is None
    both = Profile(name="p", price_input_per_mtok=1.5, price_output_per_mtok=6.0)
    assert profile_price(both) == ModelPrice(1.5, 6.0)
    only_output = Profile(name="p", price_output_per_mtok=6.0)
    assert profile_price(only_output) == ModelPrice(0.0, 6.0)


def test_profile_price_keys_load_check_and_save(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        "[profiles.lab]\n"
        'base_url = "http://10.0.0.7:11434"\n'
        "price_input_per_mtok = 0.5\n"
        "price_output_per_mtok = -1\n"
        "[profiles.bad]\n"
        'price_input_per_mtok = "cheap"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    lab = config.profiles["lab"]
    assert lab.price_input_per_mtok == 0.5
    assert lab.price_output_per_mtok is None  # negative: not set
    assert config.profiles["bad"].price_input_per_mtok is None
    assert any("price_input_per_mtok" in p.key for p in config.problems)
    saved = config.to_toml()["profiles"]["lab"]
    assert saved["price_input_per_mtok"] == 0.5
    fresh = Config()
    fresh.set("profiles.x.price_output_per_mtok", "2.25")
    assert fresh.profiles["x"].price_output_per_mtok == 2.25
