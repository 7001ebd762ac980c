"""Rill's engine: asyncio and httpx, no Qt anywhere in this package."""
