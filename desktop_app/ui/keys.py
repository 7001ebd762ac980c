"""API keys for the window, over the services' keychain (:class:`desktop_app.core.secrets.Secrets`).

Keychain calls can block (a D-Bus round trip, an unlock prompt), so every method here that
touches the keychain is meant for the services' I/O thread (``services.run_io``). Rill never
writes a key anywhere but the keychain.
"""

from __future__ import annotations

import logging

from desktop_app.core.config import Profile
from desktop_app.core.secrets import Secrets

log = logging.getLogger("rill.ui.keys")


class KeyStore:
    """Whether keys can be stored, storing them, and where a profile's key comes from."""

    def __init__(self, secrets: Secrets | None) -> None:
        self.secrets = secrets
        self.available: bool | None = None
        self.reason = "" if secrets is not None else "This window was opened without a keychain."

    @property
    def supported(self) -> bool:
        """Whether a key can be typed in (the keychain may still turn out to be missing)."""
        return self.secrets is not None and self.available is not False

    def check_available(self) -> bool:
        """Whether the system keychain can store keys (blocking)."""
        if self.secrets is None:
            self.available = False
            return False
        try:
            self.available = self.secrets.keychain_available()
        except Exception as exc:
            log.warning("keychain check failed: %s", type(exc).__name__)
            self.available = False
        if not self.available:
            self.reason = "No system keychain is available on this machine."
        return self.available

    def store(self, profile: Profile, key: str) -> None:
        """Put a profile's key in the keychain (blocking); raises ConfigError if it cannot."""
        if self.secrets is None:
            raise RuntimeError(self.reason)
        self.secrets.set(profile.name, key, provider=profile.provider)

    def source(self, profile: Profile) -> str:
        """Where the profile's key comes from: keychain, environment or none (blocking)."""
        if self.secrets is None:
            return "none"
        try:
            return self.secrets.source(profile.name, profile.provider)
        except Exception as exc:
            log.warning("keychain lookup failed: %s", type(exc).__name__)
            return "none"
