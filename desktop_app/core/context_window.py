"""How much a model reads and whether it takes images, as its server says.

The composer shows the prompt and its attachments against the model's context length and
warns before sending what will not fit, or images to a model known not to take them. What
is known comes from the server, one short bounded request per question, remembered per
endpoint and model for the session:

- Ollama: ``/api/show`` — the context (a ``num_ctx`` parameter, else
  ``model_info["<arch>.context_length"]``) and ``capabilities`` (``"vision"`` or not);
- an OpenAI-compatible server: llama.cpp's ``/props`` (the context it runs with and
  ``modalities.vision``), else the model's entry in ``/v1/models`` where the server puts
  its context there (``context_length`` — LM Studio, OpenRouter; ``max_model_len`` —
  vLLM; ``max_context_length``; ``meta.n_ctx`` / ``meta.n_ctx_train`` — llama.cpp);
- Gemini: the model's ``inputTokenLimit``.

The price table holds prices only (its ``long_context_tokens`` is where a higher price
starts, not the context), so it is not a source. Whatever a server does not say stays
None: nothing is guessed, and nothing here raises for the server's sake.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from desktop_app.core.engine import (
    SERVER_INFO_TIMEOUT_S,
    Engine,
    _count,
    _field,
    _InfoAsker,
    _ollama_context,
    listed_context,
)
from desktop_app.core.providers import get_provider
from desktop_app.core.types import ChatRequest

__all__ = ["ContextWindows", "ModelLimits"]

SILENT_RETRY_S = 300.0
"""A server that said nothing (or was not running) is asked again after this long."""


@dataclass(frozen=True, slots=True)
class ModelLimits:
    """What is known of a model's limits; None where its server said nothing."""

    context_length: int | None = None
    """Tokens the model reads in one request (prompt, history and attachments)."""
    vision: bool | None = None
    """Whether it takes images: True or False as the server said, None when unknown."""
    source: str = ""
    """Where the numbers come from, for people (``Ollama /api/show``)."""


class ContextWindows:
    """Looks up :class:`ModelLimits` once per (provider, endpoint, model); an answer that
    said nothing (a server not running yet) is kept for :data:`SILENT_RETRY_S` only."""

    def __init__(self, engine: Engine, *, timeout_s: float = SERVER_INFO_TIMEOUT_S) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self._known: dict[tuple[str, str, str], ModelLimits] = {}
        self._silent: dict[tuple[str, str, str], float] = {}
        """When each endpoint that said nothing may be asked again (``time.monotonic``)."""
        self._asking: dict[tuple[str, str, str], asyncio.Future[ModelLimits]] = {}

    def known(self, provider: str, base_url: str, model: str) -> ModelLimits | None:
        """The limits already looked up, or None."""
        return self._known.get((provider, base_url.rstrip("/"), model))

    def forget(self, base_url: str | None = None) -> None:
        """Ask again next time (for one endpoint, or all)."""
        if base_url is None:
            self._known.clear()
            self._silent.clear()
            return
        root = base_url.rstrip("/")
        for table in (self._known, self._silent):
            for key in [k for k in table if k[1] == root]:
                del table[key]

    async def limits(
        self, provider: str, base_url: str, model: str, profile: str = "default"
    ) -> ModelLimits:
        """The limits of ``model`` at ``base_url`` (asked once; later calls are cached;
        calls while a lookup runs wait for it)."""
        key = (provider, base_url.rstrip("/"), model)
        found = self._known.get(key)
        if found is not None:
            return found
        if self._silent.get(key, 0.0) > time.monotonic():
            return ModelLimits()
        running = self._asking.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[ModelLimits] = asyncio.get_running_loop().create_future()
        self._asking[key] = future
        result = ModelLimits()
        try:
            result = await self._look_up(provider, base_url, model, profile)
            if result != ModelLimits():
                self._known[key] = result
            else:  # a server that said nothing (or was down) is asked again later
                self._silent[key] = time.monotonic() + SILENT_RETRY_S
        finally:
            del self._asking[key]
            future.set_result(result)
        return result

    async def _look_up(
        self, provider_name: str, base_url: str, model: str, profile: str
    ) -> ModelLimits:
        provider = get_provider(provider_name)
        probe = ChatRequest(
            provider=provider.name, base_url=base_url, model=model, messages=(), profile=profile
        )
        headers = provider.headers(await self.engine.info_key(probe))
        headers["Accept"] = "application/json"
        ask = _InfoAsker(self.engine.client, headers, self.timeout_s, provider.title)
        root = base_url.rstrip("/")
        if provider.name == "ollama":
            if not model:
                return ModelLimits()
            shown = await ask.post(root + "/api/show", {"model": model})
            caps = _field(shown, "capabilities")
            vision = ("vision" in caps) if isinstance(caps, list) else None
            context = _ollama_context(shown)
            said = context is not None or vision is not None
            return ModelLimits(context, vision, "Ollama /api/show" if said else "")
        if provider.name == "openai":
            return await _openai_limits(ask, root, provider.models_url(base_url), model)
        if provider.name == "gemini" and model:
            info = await self.engine.server_info(
                provider_name, base_url, profile, model=model, timeout_s=self.timeout_s
            )
            said = info.context_length is not None
            return ModelLimits(info.context_length, None, "the Gemini model" if said else "")
        return ModelLimits()


async def _openai_limits(ask: _InfoAsker, root: str, models_url: str, model: str) -> ModelLimits:
    props = await ask.get(root.removesuffix("/v1") + "/props")
    context: int | None = None
    vision: bool | None = None
    source = ""
    settings = _field(props, "default_generation_settings")
    if isinstance(settings, dict):
        context = _count(_field(settings, "n_ctx"))
        seen = _field(_field(props, "modalities"), "vision")
        vision = seen if isinstance(seen, bool) else None
        source = "llama.cpp /props"
    if context is None:
        listed = _field(await ask.get(models_url), "data")
        entry = _model_entry(listed, model)
        if entry is not None:
            context = listed_context(entry)
            if context is not None:
                source = "the server's model list"
    return ModelLimits(context, vision, source if context is not None or vision is not None else "")


def _model_entry(listed: Any, model: str) -> Any:
    entries = listed if isinstance(listed, list) else []
    for entry in entries:
        if _field(entry, "id") == model:
            return entry
    return entries[0] if len(entries) == 1 and not model else None
