"""One module per wire protocol; ``get_provider`` picks one by name."""

from __future__ import annotations

from desktop_app.core.errors import ConfigError
from desktop_app.core.providers.anthropic import AnthropicProvider
from desktop_app.core.providers.base import Provider, StreamParser
from desktop_app.core.providers.gemini import GeminiProvider
from desktop_app.core.providers.ollama import OllamaProvider
from desktop_app.core.providers.openai import OpenAIProvider

REGISTRY: dict[str, Provider] = {
    "openai": OpenAIProvider(),
    "ollama": OllamaProvider(),
    "anthropic": AnthropicProvider(),
    "gemini": GeminiProvider(),
}


def get_provider(name: str) -> Provider:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"Unknown provider '{name}'.",
            action=f"Use one of: {', '.join(REGISTRY)}.",
        ) from None


__all__ = ["REGISTRY", "Provider", "StreamParser", "get_provider"]
