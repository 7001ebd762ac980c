"""What a reply cost: model prices in US dollars per million tokens, and the lookup.

The price list ships with Rill as ``desktop_app/data/pricing.toml``. A ``pricing.toml`` in
the user config folder, in the same format, is merged over it: its entries replace the
shipped ones with the same name and add new ones. A broken override is reported in
:attr:`PriceTable.problems` and ignored (all of it, or the broken entries), never raised.

The file has two tables::

    [providers]
    ollama = 0                                   # every model of this provider
    [models]
    "gpt-4o" = { input = 2.50, output = 10.00 }  # USD per million tokens
    "sim-*" = 0                                  # every model starting with "sim-"

A model entry may add long-context prices (``long_context_tokens``, ``long_input``,
``long_output``) that apply when a request sends more input tokens than that.

:meth:`PriceTable.cost` returns ``None`` for a model it has no price for: an unknown cost
is never reported as free.

What one reply costs is :func:`reply_cost`: a profile's own prices when it sets them
(``price_input_per_mtok`` / ``price_output_per_mtok``), else nothing for a server on this
computer or its local network (:func:`is_local_url`: it is the user's own hardware), else
the price list.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from desktop_app.core.config import Problem, Profile, url_parts
from desktop_app.core.types import TokenUsage

__all__ = [
    "FREE",
    "PRICING_FILE",
    "ModelPrice",
    "PriceTable",
    "is_local_url",
    "load_price_table",
    "parse_price_table",
    "profile_price",
    "reply_cost",
    "shipped_price_table",
]

PRICING_FILE: Final = "pricing.toml"
"""The name of the price list, shipped in ``desktop_app/data`` and overridable in the
user config folder."""

TOKENS_PER_UNIT: Final = 1_000_000
_BOUNDARIES: Final = frozenset("-@")
_ENTRY_FIELDS: Final = frozenset(
    {"input", "output", "long_context_tokens", "long_input", "long_output"}
)
_PROVIDER_FIELDS: Final = frozenset({"input", "output"})


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """US dollars per million tokens, with optional higher prices for long prompts."""

    input: float
    output: float
    long_context_tokens: int | None = None
    """Above this many input tokens, ``long_input`` and ``long_output`` apply."""
    long_input: float | None = None
    long_output: float | None = None

    def cost(self, usage: TokenUsage) -> float:
        """The cost in US dollars of ``usage`` at these prices."""
        per_input, per_output = self.input, self.output
        if self.long_context_tokens is not None and usage.input_tokens > self.long_context_tokens:
            per_input = self.input if self.long_input is None else self.long_input
            per_output = self.output if self.long_output is None else self.long_output
        return (usage.input_tokens * per_input + usage.output_tokens * per_output) / TOKENS_PER_UNIT


FREE: Final = ModelPrice(0.0, 0.0)

_LOCAL_NETWORKS: Final = tuple(
    ipaddress.ip_network(net)
    for net in (
        "127.0.0.0/8",  # loopback
        "0.0.0.0/32",  # "this host", as servers listening everywhere print it
        "10.0.0.0/8",  # private networks (RFC 1918)
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",  # link-local
        "::1/128",
        "::/128",
        "fc00::/7",  # unique local addresses
        "fe80::/10",  # link-local
    )
)


def is_local_url(base_url: str) -> bool:
    """Whether ``base_url`` names a server on this computer or on its local network.

    Local: ``localhost`` and ``*.localhost``, loopback addresses (127.0.0.0/8, ::1),
    private network addresses (10/8, 172.16/12, 192.168/16, fc00::/7), link-local ones
    (169.254/16, fe80::/10) and mDNS names (``*.local``). A host name is never looked up,
    so a name that only resolves to a private address does not count; an empty or broken
    URL is not local.
    """
    try:
        host = url_parts(base_url.strip())[1]
    except ValueError:
        return False
    host = host.strip("[]").rstrip(".").lower()
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local")):
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _LOCAL_NETWORKS)


def profile_price(profile: Profile) -> ModelPrice | None:
    """The prices a profile sets for itself, or None when it sets neither.

    A profile that sets one of ``price_input_per_mtok`` and ``price_output_per_mtok``
    and not the other is billed nothing for the other.
    """
    own_input, own_output = profile.price_input_per_mtok, profile.price_output_per_mtok
    if own_input is None and own_output is None:
        return None
    return ModelPrice(own_input or 0.0, own_output or 0.0)


Pricing = Callable[[str, str, TokenUsage | None], float | None]
"""The price list as a function: (provider, model, usage) -> US dollars or None."""


def reply_cost(
    *,
    provider: str,
    model: str,
    usage: TokenUsage | None,
    base_url: str,
    own: ModelPrice | None = None,
    pricing: Pricing | None = None,
) -> float | None:
    """What one reply cost in US dollars, or None when unknown.

    ``own`` (a profile's prices, see :func:`profile_price`) wins wherever the server is;
    then a server on this computer or its network (:func:`is_local_url`) costs 0; then
    ``pricing`` (the shipped price list by default) decides.
    """
    if usage is None:
        return None
    if own is not None:
        return own.cost(usage)
    if is_local_url(base_url):
        return 0.0
    if pricing is None:
        pricing = shipped_price_table().cost
    return pricing(provider, model, usage)


class PriceTable:
    """Model and provider prices, and the cost of a reply.

    An instance is callable with the same arguments as :meth:`cost`, so it fits the
    engine's ``Pricing`` hook directly.
    """

    def __init__(
        self,
        models: Mapping[str, ModelPrice] | None = None,
        providers: Mapping[str, ModelPrice] | None = None,
        problems: tuple[str, ...] | list[str] = (),
    ) -> None:
        self._models: dict[str, ModelPrice] = {
            name.strip().lower(): price for name, price in (models or {}).items()
        }
        self._providers: dict[str, ModelPrice] = {
            name.strip().lower(): price for name, price in (providers or {}).items()
        }
        self.problems: tuple[str, ...] = tuple(problems)
        """Human sentences about entries or files that were ignored."""
        self._exact = {name: price for name, price in self._models.items() if "*" not in name}
        self._wildcards = sorted(
            ((name[:-1], price) for name, price in self._models.items() if name.endswith("*")),
            key=lambda item: len(item[0]),
            reverse=True,
        )

    @property
    def models(self) -> Mapping[str, ModelPrice]:
        """Every model entry by its (lower-case) name, wildcards included."""
        return MappingProxyType(self._models)

    @property
    def providers(self) -> Mapping[str, ModelPrice]:
        """Every provider-wide price by provider name."""
        return MappingProxyType(self._providers)

    def price(self, provider: str, model: str) -> ModelPrice | None:
        """The prices for ``model`` served by ``provider``, or None when unknown.

        A provider-wide price wins. Then the model name (lower case, surrounding space
        removed) is looked up exactly, then by its longest listed prefix that ends at a
        ``-`` or ``@`` (or a ``*`` wildcard entry). A name with a path such as
        ``models/gemini-2.5-flash`` is also tried without the path.
        """
        rule = self._providers.get(provider.strip().lower())
        if rule is not None:
            return rule
        name = model.strip().lower()
        if not name:
            return None
        candidates = [name]
        if "/" in name:
            candidates.append(name.rsplit("/", 1)[1])
        for candidate in candidates:
            found = self._exact.get(candidate)
            if found is not None:
                return found
        for candidate in candidates:
            found = self._longest_prefix(candidate)
            if found is not None:
                return found
        return None

    def cost(self, provider: str, model: str, usage: TokenUsage | None) -> float | None:
        """The cost in US dollars, or None when the usage or the model's price is unknown."""
        if usage is None:
            return None
        price = self.price(provider, model)
        return None if price is None else price.cost(usage)

    def __call__(self, provider: str, model: str, usage: TokenUsage | None) -> float | None:
        return self.cost(provider, model, usage)

    def merged(self, override: PriceTable) -> PriceTable:
        """This table with ``override``'s entries on top; the problems of both are kept."""
        return PriceTable(
            {**self._models, **override._models},
            {**self._providers, **override._providers},
            (*self.problems, *override.problems),
        )

    def _longest_prefix(self, name: str) -> ModelPrice | None:
        best: tuple[int, ModelPrice] | None = None
        for known, price in self._exact.items():
            size = len(known)
            if (
                size < len(name)
                and name[size] in _BOUNDARIES
                and name.startswith(known)
                and (best is None or size > best[0])
            ):
                best = (size, price)
        for prefix, price in self._wildcards:
            if name.startswith(prefix):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), price)
                break
        return None if best is None else best[1]

    def __repr__(self) -> str:
        return (
            f"PriceTable({len(self._models)} models, {len(self._providers)} providers, "
            f"{len(self.problems)} problems)"
        )


def parse_price_table(text: str, source: str) -> PriceTable:
    """A table from the TOML ``text`` of a price list; ``source`` names it in problems.

    Entries that are not valid are left out and described in ``problems``; text that is
    not TOML gives an empty table with one problem.
    """
    problems: list[str] = []

    def report(key: str, reason: str) -> None:
        problems.append(str(Problem(source, key, _line_of(text, key), reason)))

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        problems.append(
            str(Problem(source, "(whole file)", line, f"cannot be read ({exc}); it is ignored"))
        )
        return PriceTable(problems=problems)

    models: dict[str, ModelPrice] = {}
    providers: dict[str, ModelPrice] = {}
    for section, body in doc.items():
        if section not in ("models", "providers"):
            report(section, 'unknown section (expected "models" or "providers"); it is ignored')
            continue
        if not isinstance(body, dict):
            report(section, "must be a table; it is ignored")
            continue
        target = models if section == "models" else providers
        for raw_name, value in body.items():
            name = raw_name.strip().lower()
            key = f"{section}.{raw_name}"
            try:
                if not name:
                    raise ValueError("the name is empty")
                if section == "models" and "*" in name[:-1]:
                    raise ValueError('"*" may only end a model name')
                if section == "providers" and "*" in name:
                    raise ValueError('"*" is not allowed in a provider name')
                target[name] = _entry(
                    value, _ENTRY_FIELDS if section == "models" else _PROVIDER_FIELDS
                )
            except ValueError as exc:
                report(key, f"{exc}; the entry is ignored")
    return PriceTable(models, providers, problems)


@lru_cache(maxsize=1)
def shipped_price_table() -> PriceTable:
    """The price list that ships with Rill (empty, with a problem, if it cannot be read)."""
    resource = resources.files("desktop_app").joinpath("data", PRICING_FILE)
    try:
        text = resource.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return PriceTable(
            problems=(
                f"Rill's built-in price list could not be read ({exc}); costs show as "
                "unknown until it is reinstalled.",
            )
        )
    return parse_price_table(text, f"built-in {PRICING_FILE}")


def load_price_table(config_dir: Path | None) -> PriceTable:
    """The shipped prices, with ``config_dir/pricing.toml`` merged over them if it exists.

    A user file that cannot be read is ignored and described in ``problems``.
    """
    table = shipped_price_table()
    if config_dir is None:
        return table
    path = Path(config_dir) / PRICING_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return table
    except (OSError, UnicodeDecodeError) as exc:
        problem = Problem(str(path), "(whole file)", None, f"cannot be read ({exc}); it is ignored")
        return table.merged(PriceTable(problems=(str(problem),)))
    return table.merged(parse_price_table(text, str(path)))


def _entry(value: Any, fields: frozenset[str]) -> ModelPrice:
    """One price entry: a number (input and output alike) or a table of prices."""
    if _is_number(value):
        amount = _price(value, "the price")
        return ModelPrice(amount, amount)
    if not isinstance(value, dict):
        raise ValueError(
            f"expected a number or a table like {{ input = 1.0, output = 2.0 }}, got {value!r}"
        )
    unknown = sorted(set(value) - fields)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    missing = [name for name in ("input", "output") if name not in value]
    if missing:
        raise ValueError(f"missing {' and '.join(missing)}")
    threshold = value.get("long_context_tokens")
    long_input = value.get("long_input")
    long_output = value.get("long_output")
    if threshold is None and (long_input is not None or long_output is not None):
        raise ValueError("long_input and long_output need long_context_tokens")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1
    ):
        raise ValueError(f"long_context_tokens must be a positive whole number, got {threshold!r}")
    return ModelPrice(
        input=_price(value["input"], "input"),
        output=_price(value["output"], "output"),
        long_context_tokens=threshold,
        long_input=None if long_input is None else _price(long_input, "long_input"),
        long_output=None if long_output is None else _price(long_output, "long_output"),
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _price(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    amount = float(value)
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"{what} must be zero or more, got {value!r}")
    return amount


def _line_of(text: str, key: str) -> int | None:
    """The line where the last part of a dotted ``key`` is assigned, if it can be found."""
    leaf = key.split(".", 1)[-1]
    pattern = re.compile(rf"^\s*(?:\[\s*)?[\"']?{re.escape(leaf)}[\"']?\s*(?:=|\])", re.M)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None
