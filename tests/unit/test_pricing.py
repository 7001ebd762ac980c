"""Model prices: the shipped list, name matching, user overrides, costs."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from desktop_app.core.engine import Pricing
from desktop_app.core.paths import app_paths
from desktop_app.core.pricing import (
    PRICING_FILE,
    ModelPrice,
    PriceTable,
    load_price_table,
    parse_price_table,
    shipped_price_table,
)
from desktop_app.core.types import TokenUsage

REQUIRED_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "claude-sonnet-4",
    "claude-haiku-4-5",
    "claude-3-5-haiku",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "deepseek-chat",
    "deepseek-reasoner",
)

MILLION = TokenUsage(input_tokens=1_000_000, output_tokens=1_000_000)


@pytest.fixture
def table() -> PriceTable:
    return load_price_table(None)


def test_shipped_file_is_package_data_with_a_date() -> None:
    text = resources.files("desktop_app").joinpath("data", PRICING_FILE).read_text("utf-8")
    assert "# as of 20" in text
    doc = tomllib.loads(text)
    assert set(doc) == {"models", "providers"}


def test_shipped_table_prices_every_listed_model(table: PriceTable) -> None:
    assert table.problems == ()
    for model in REQUIRED_MODELS:
        price = table.price("openai", model)
        assert price is not None, model
        assert price.input > 0 and price.output > price.input, model


def test_known_list_prices(table: PriceTable) -> None:
    assert table.price("openai", "gpt-4o") == ModelPrice(2.50, 10.00)
    assert table.price("openai", "gpt-4o-mini") == ModelPrice(0.15, 0.60)
    assert table.price("anthropic", "claude-haiku-4-5") == ModelPrice(1.00, 5.00)
    assert table.price("gemini", "gemini-2.5-flash") == ModelPrice(0.30, 2.50)


def test_local_and_simulated_models_are_free(table: PriceTable) -> None:
    usage = TokenUsage(123_456, 7_890)
    assert table.cost("ollama", "llama3.2", usage) == 0.0
    assert table.cost("ollama", "qwen2.5:7b-instruct", usage) == 0.0
    # Provider-wide price wins, whatever the model is called.
    assert table.cost("ollama", "gpt-4o", usage) == 0.0
    for provider in ("openai", "anthropic", "gemini"):
        assert table.cost(provider, "sim-small", usage) == 0.0
        assert table.cost(provider, "sim-large", usage) == 0.0


@pytest.mark.parametrize(
    ("served", "base"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("models/gemini-2.5-flash", "gemini-2.5-flash"),
        ("models/gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
        ("gemini-2.5-pro-preview-05-06", "gemini-2.5-pro"),
        ("GPT-4o", "gpt-4o"),
        ("  deepseek-chat ", "deepseek-chat"),
    ],
)
def test_dated_and_suffixed_names_map_to_their_base(
    table: PriceTable, served: str, base: str
) -> None:
    assert table.price("openai", served) == table.models[base]


def test_prefix_must_end_at_a_boundary_and_longest_wins(table: PriceTable) -> None:
    # "gpt-4o" is a prefix of "gpt-4omni" but not on a "-"/"@" boundary.
    assert table.price("openai", "gpt-4omni") is None
    assert table.price("openai", "o3x") is None
    # The longest listed prefix wins: not o3's price for o3-mini, not opus-4 for opus-4-5.
    assert table.price("openai", "o3-mini-2025-01-31") == table.models["o3-mini"]
    assert table.price("anthropic", "claude-opus-4-5-20251101") == ModelPrice(5.0, 25.0)
    assert table.price("anthropic", "claude-opus-4-20250514") == ModelPrice(15.0, 75.0)


def test_unknown_model_or_usage_is_unknown_never_free(table: PriceTable) -> None:
    assert table.cost("openai", "my-local-finetune", TokenUsage(10, 10)) is None
    assert table.cost("openai", "", TokenUsage(10, 10)) is None
    assert table.cost("openai", "gpt-4o", None) is None
    assert table.cost("ollama", "llama3.2", None) is None


def test_cost_is_tokens_times_price_per_million(table: PriceTable) -> None:
    assert table.cost("openai", "gpt-4o", MILLION) == pytest.approx(12.50)
    usage = TokenUsage(input_tokens=1200, output_tokens=350)
    expected = (1200 * 0.15 + 350 * 0.60) / 1_000_000
    assert table.cost("openai", "gpt-4o-mini-2024-07-18", usage) == pytest.approx(expected)
    assert table.cost("openai", "gpt-4o", TokenUsage(0, 0)) == 0.0


def test_long_context_prices_apply_above_the_threshold(table: PriceTable) -> None:
    short = TokenUsage(input_tokens=200_000, output_tokens=1_000)
    long = TokenUsage(input_tokens=200_001, output_tokens=1_000)
    assert table.cost("gemini", "gemini-2.5-pro", short) == pytest.approx(
        (200_000 * 1.25 + 1_000 * 10.0) / 1_000_000
    )
    assert table.cost("gemini", "gemini-2.5-pro", long) == pytest.approx(
        (200_001 * 2.50 + 1_000 * 15.0) / 1_000_000
    )


def test_table_fits_the_engine_pricing_hook(table: PriceTable) -> None:
    hooks: list[Pricing] = [table, table.cost]
    for hook in hooks:
        assert hook("openai", "gpt-4o", MILLION) == pytest.approx(12.50)
        assert hook("openai", "nope", MILLION) is None


def test_user_override_is_merged_over_the_shipped_table(tmp_path: Path) -> None:
    (tmp_path / PRICING_FILE).write_text(
        "[models]\n"
        '"gpt-4o" = { input = 1.0, output = 2.0 }\n'
        '"my-finetune" = { input = 3, output = 4 }\n'
        '"house-*" = 0.5\n'
        "[providers]\n"
        "anthropic = { input = 0, output = 0 }\n",
        encoding="utf-8",
    )
    table = load_price_table(tmp_path)
    assert table.problems == ()
    assert table.price("openai", "gpt-4o-2024-08-06") == ModelPrice(1.0, 2.0)
    assert table.price("openai", "my-finetune") == ModelPrice(3.0, 4.0)
    assert table.price("openai", "house-model-7b") == ModelPrice(0.5, 0.5)
    assert table.cost("anthropic", "claude-sonnet-4-5", MILLION) == 0.0
    # Shipped entries the override does not mention stay.
    assert table.price("openai", "gpt-4.1") == ModelPrice(2.0, 8.0)
    assert table.cost("ollama", "llama3.2", MILLION) == 0.0
    # The shipped table itself is not changed.
    assert shipped_price_table().price("openai", "gpt-4o") == ModelPrice(2.5, 10.0)


def test_override_in_the_app_config_folder(rill_home: Path) -> None:
    config_dir = app_paths().config_dir
    config_dir.mkdir(parents=True)
    (config_dir / PRICING_FILE).write_text('[models]\n"sim-small" = 1\n', encoding="utf-8")
    table = load_price_table(config_dir)
    assert table.cost("openai", "sim-small", MILLION) == pytest.approx(2.0)
    assert table.cost("openai", "sim-large", MILLION) == 0.0


def test_broken_override_is_reported_and_ignored(tmp_path: Path) -> None:
    path = tmp_path / PRICING_FILE
    path.write_text("[models\n'gpt-4o' = = 1\n", encoding="utf-8")
    table = load_price_table(tmp_path)
    assert len(table.problems) == 1
    problem = table.problems[0]
    assert str(path) in problem and "cannot be read" in problem and "line 1" in problem
    assert table.price("openai", "gpt-4o") == ModelPrice(2.5, 10.0)
    assert path.read_text(encoding="utf-8").startswith("[models")  # left alone


def test_unreadable_override_is_reported(tmp_path: Path) -> None:
    (tmp_path / PRICING_FILE).mkdir()
    table = load_price_table(tmp_path)
    assert len(table.problems) == 1
    assert "cannot be read" in table.problems[0]
    assert table.price("openai", "gpt-4o") is not None


def test_bad_entries_are_reported_with_lines_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / PRICING_FILE
    path.write_text(
        "[models]\n"  # 1
        '"good" = { input = 1, output = 2 }\n'  # 2
        '"neg" = { input = -1, output = 2 }\n'  # 3
        '"text" = { input = "cheap", output = 2 }\n'  # 4
        '"half" = { input = 1 }\n'  # 5
        '"extra" = { input = 1, output = 2, cached = 0.1 }\n'  # 6
        '"a*b" = 1\n'  # 7
        '"longonly" = { input = 1, output = 2, long_input = 3 }\n'  # 8
        '"flag" = true\n'  # 9
        "[colours]\n"  # 10
        "red = 1\n"  # 11
        "[providers]\n"  # 12
        'ollama = "free"\n',  # 13
        encoding="utf-8",
    )
    table = load_price_table(tmp_path)
    assert table.price("openai", "good") == ModelPrice(1.0, 2.0)
    for name in ("neg", "text", "half", "extra", "a*b", "longonly", "flag"):
        assert name not in table.models
    lines = {problem.split(":")[0] for problem in table.problems}
    assert lines == {f"{path}, line {n}" for n in (3, 4, 5, 6, 7, 8, 9, 10, 13)}
    assert all("ignored" in problem for problem in table.problems)
    # The bad provider entry did not replace the shipped one.
    assert table.cost("ollama", "llama3.2", MILLION) == 0.0


def test_parse_rejects_nothing_silently() -> None:
    table = parse_price_table('models = 3\n[providers]\n"x*" = 1\n', "test.toml")
    assert len(table.problems) == 2
    assert table.models == {} and table.providers == {}


def test_problems_from_both_tables_are_kept() -> None:
    base = PriceTable({"a": ModelPrice(1, 1)}, problems=["first"])
    top = PriceTable({"a": ModelPrice(2, 2)}, problems=["second"])
    merged = base.merged(top)
    assert merged.problems == ("first", "second")
    assert merged.price("x", "a") == ModelPrice(2, 2)
