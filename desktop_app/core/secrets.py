"""API keys: per profile in the OS keychain, or per provider in an environment variable.

Keys live in the system keychain through ``keyring`` (service ``Rill``, user name
``profile:<name>``), with one environment variable per provider as the fallback. Rill never
writes a key to a file, and never puts one in an exception message or a log line: every key
:class:`Secrets` hands out or stores is added to a process-wide set of known secrets that
:func:`redact` (from :mod:`desktop_app.core.redaction`, used by errors, the log handlers
of :mod:`desktop_app.core.logs` and ``q``) masks.

Where no keychain backend exists (a headless Linux machine, say), :meth:`Secrets.get` falls
back to the environment and :meth:`Secrets.set` raises a ``ConfigError`` that says so.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, Literal

from desktop_app.core.errors import ConfigError
from desktop_app.core.redaction import (
    MASK,
    MIN_SECRET_LENGTH,
    known_secrets,
    redact,
    register_secret,
)
from desktop_app.core.types import ChatRequest

if TYPE_CHECKING:
    import keyring.backend

# keyring is imported when a key is first looked up, stored or removed: importing it takes
# tens of milliseconds that the window's start does not need to wait for.

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SERVICE",
    "KeySource",
    "Secrets",
    "env_vars",
    "key_lookup",
    "known_secrets",
    "redact",
    "register_secret",
]

log = logging.getLogger("rill.secrets")

SERVICE: Final = "Rill"
"""The keychain service name every key is stored under."""


@functools.cache
def env_vars() -> Mapping[str, str]:
    """The environment variable that holds each provider's key (as each provider declares
    it); ollama needs none. (The providers are imported when a key is first looked up.)"""
    from desktop_app.core.providers import REGISTRY

    return {name: provider.key_env for name, provider in REGISTRY.items() if provider.key_env}


KeySource = Literal["keychain", "environment", "none"]


def _username(profile: str) -> str:
    return f"profile:{profile}"


def _env_action(provider: str | None, *, lead: str = "") -> str:
    """The sentence that points to ``provider``'s environment variable, after ``lead``."""
    variable = env_vars().get(provider or "")
    if variable:
        what = variable
    elif provider is None:
        what = "OPENAI_API_KEY (or the provider's variable)"
    else:
        what = "the provider's API key variable"
    verb = "set" if lead else "Set"
    return f"{lead}{verb} {what} in the environment instead."


class Secrets:
    """API keys per profile: the keychain first, then the provider's environment variable.

    ``backend`` pins a keyring backend; by default the one ``keyring`` selects at the time
    of each call. ``environ`` replaces ``os.environ`` for the fallback. Keys read from the
    keychain are kept in memory for the life of this object, so later lookups do not wait
    on the keychain; :meth:`set` and :meth:`delete` keep that copy in step.
    """

    def __init__(
        self,
        *,
        backend: keyring.backend.KeyringBackend | None = None,
        environ: Mapping[str, str] | None = None,
        service: str = SERVICE,
    ) -> None:
        self._backend = backend
        self._environ = environ
        self.service = service
        self._lock = threading.RLock()
        self._cache: dict[str, str] = {}
        self._broken: str | None = None

    # -- lookups -------------------------------------------------------------------

    def get(self, profile: str, provider: str) -> str | None:
        """The key for ``profile``: from the keychain, else the provider's variable."""
        key = self._from_keychain(profile)
        if key is None:
            key = self._from_environment(provider)
        if key is not None:
            register_secret(key)
        return key

    def source(self, profile: str, provider: str) -> KeySource:
        """Where :meth:`get` finds the key for ``profile`` right now."""
        key = self._from_keychain(profile)
        if key is not None:
            register_secret(key)
            return "keychain"
        env = self._from_environment(provider)
        if env is not None:
            register_secret(env)
            return "environment"
        return "none"

    @staticmethod
    def env_var(provider: str) -> str | None:
        """The environment variable that holds ``provider``'s key, if it has one."""
        return env_vars().get(provider)

    # -- changes -------------------------------------------------------------------

    def set(self, profile: str, key: str, *, provider: str | None = None) -> None:
        """Store ``key`` for ``profile`` in the keychain.

        Raises ``ConfigError`` when there is no keychain or it refuses; the action names
        ``provider``'s environment variable as the alternative. The key itself is never
        part of the error.
        """
        self._store(_username(profile), key, "the key", _env_action(provider))
        log.info("Stored the API key of profile %r in %s.", profile, self.backend_name())

    def delete(self, profile: str) -> None:
        """Remove the key of ``profile`` from the keychain; nothing happens if there is none."""
        if self._remove(_username(profile), "the key"):
            log.info("Removed the API key of profile %r from %s.", profile, self.backend_name())

    # -- other secrets (an MCP server's tokens, say) -------------------------------

    def get_secret(self, name: str) -> str | None:
        """The secret stored under ``name`` (a keychain user name such as ``mcp:github:TOKEN``)."""
        return self._read(name)

    def set_secret(self, name: str, value: str, *, alternative: str) -> None:
        """Store ``value`` under ``name``; ``alternative`` is the sentence that says what to
        do instead when there is no keychain or it refuses."""
        self._store(name, value, "the secret", alternative)
        log.info("Stored the secret %r in %s.", name, self.backend_name())

    def delete_secret(self, name: str) -> None:
        """Remove the secret stored under ``name``; nothing happens if there is none."""
        if self._remove(name, "the secret"):
            log.info("Removed the secret %r from %s.", name, self.backend_name())

    def _store(self, username: str, value: str, what: str, alternative: str) -> None:
        value = value.strip()
        if not value:
            raise ValueError(f"{what} is empty")
        register_secret(value)
        backend = self._keychain()
        if backend is None:
            raise self._no_keychain(what, alternative)
        import keyring.errors

        try:
            backend.set_password(self.service, username, value)
        except (keyring.errors.NoKeyringError, keyring.errors.InitError) as exc:
            self._mark_broken(exc)
            raise self._no_keychain(what, alternative) from None
        except Exception as exc:
            lead = alternative[:1].lower() + alternative[1:]
            raise ConfigError(
                f"The system keychain ({self.backend_name()}) refused to store {what}.",
                action=f"Unlock the keychain and try again, or {lead}",
                detail=_describe(exc, value),
            ) from None
        with self._lock:
            self._cache[username] = value

    def _remove(self, username: str, what: str) -> bool:
        """Delete ``username``'s entry; whether there was one to delete."""
        with self._lock:
            self._cache.pop(username, None)
        backend = self._keychain()
        if backend is None:
            return False
        import keyring.errors

        try:
            backend.delete_password(self.service, username)
        except keyring.errors.PasswordDeleteError:
            return False
        except (keyring.errors.NoKeyringError, keyring.errors.InitError) as exc:
            self._mark_broken(exc)
            return False
        except Exception as exc:
            raise ConfigError(
                f"The system keychain ({self.backend_name()}) refused to remove {what}.",
                action="Unlock the keychain and try again.",
                detail=_describe(exc),
            ) from None
        return True

    # -- the keychain ----------------------------------------------------------------

    def keychain_available(self) -> bool:
        """Whether a system keychain backend is there to store keys in."""
        return self._keychain() is not None

    def backend_name(self) -> str:
        """A readable name for the keychain in use, or says that there is none."""
        from keyring.backends import chainer

        backend = self._current_backend()
        if _is_unusable(backend):
            return "no system keychain"
        if isinstance(backend, chainer.ChainerBackend):
            names = [_friendly_name(b) for b in backend.backends]
            return " + ".join(names) if names else "no system keychain"
        return _friendly_name(backend)

    def _current_backend(self) -> keyring.backend.KeyringBackend:
        if self._backend is not None:
            return self._backend
        import keyring

        return keyring.get_keyring()

    def _keychain(self) -> keyring.backend.KeyringBackend | None:
        backend = self._current_backend()
        if self._broken is not None or _is_unusable(backend):
            return None
        return backend

    def _mark_broken(self, exc: BaseException) -> None:
        with self._lock:
            self._broken = type(exc).__name__
        log.warning(
            "The system keychain (%s) is not usable (%s); API keys come from the environment.",
            self.backend_name(),
            _describe(exc),
        )

    def _from_keychain(self, profile: str) -> str | None:
        return self._read(_username(profile))

    def _read(self, username: str) -> str | None:
        with self._lock:
            cached = self._cache.get(username)
        if cached is not None:
            return cached
        backend = self._keychain()
        if backend is None:
            return None
        import keyring.errors

        try:
            value = backend.get_password(self.service, username)
        except (keyring.errors.NoKeyringError, keyring.errors.InitError) as exc:
            self._mark_broken(exc)
            return None
        except Exception as exc:
            log.warning(
                "Rill could not read %r from the keychain (%s); it uses the environment instead.",
                username,
                _describe(exc),
            )
            return None
        if not value:
            return None
        register_secret(value)
        with self._lock:
            self._cache[username] = value
        return value

    def _from_environment(self, provider: str) -> str | None:
        variable = env_vars().get(provider)
        if variable is None:
            return None
        environ = self._environ if self._environ is not None else os.environ
        value = environ.get(variable, "").strip()
        return value or None

    def _no_keychain(self, what: str, alternative: str) -> ConfigError:
        return ConfigError(
            f"No system keychain is available on this machine, so Rill cannot store {what}.",
            action=alternative,
        )


def key_lookup(secrets: Secrets) -> Callable[[ChatRequest], str | None]:
    """The engine's ``KeyLookup``: the key for a request's profile and provider."""

    def lookup(request: ChatRequest) -> str | None:
        return secrets.get(request.profile, request.provider)

    return lookup


def _is_unusable(backend: keyring.backend.KeyringBackend) -> bool:
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring | null.Keyring):
        return True
    return isinstance(backend, chainer.ChainerBackend) and not backend.backends


_FRIENDLY_NAMES: Final[Mapping[str, str]] = {
    "keyring.backends.macOS.Keyring": "macOS Keychain",
    "keyring.backends.Windows.WinVaultKeyring": "Windows Credential Manager",
    "keyring.backends.SecretService.Keyring": "Secret Service",
    "keyring.backends.libsecret.Keyring": "libsecret",
    "keyring.backends.kwallet.DBusKeyring": "KWallet",
    "keyring.backends.kwallet.DBusKeyringKWallet4": "KWallet 4",
}


def _friendly_name(backend: keyring.backend.KeyringBackend) -> str:
    kind = type(backend)
    qualified = f"{kind.__module__}.{kind.__qualname__}"
    return _FRIENDLY_NAMES.get(qualified) or str(backend.name)


def _describe(exc: BaseException, *secrets: str) -> str:
    """``exc`` as ``Type: message`` with ``secrets`` and every known secret masked."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact(text, (*secrets, *known_secrets()))
