"""API keys: keychain first, environment fallback, no-keychain machines, redaction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors
import pytest
from keyring.backends import fail

from desktop_app.core.errors import ConfigError
from desktop_app.core.secrets import (
    MASK,
    SERVICE,
    Secrets,
    key_lookup,
    known_secrets,
    redact,
    register_secret,
)
from desktop_app.core.types import ChatRequest, Message

OPENAI_KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123"
ANTHROPIC_KEY = "sk-ant-api03-ZyXwVuTsRqPoNmLkJiHgFeDcBa-987654"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A real keyring backend that keeps passwords in a dict.

    Its negative priority keeps keyring's own backend discovery from ever choosing it.
    """

    priority = -5

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.passwords: dict[tuple[str, str], str] = {}
        self.reads = 0

    def get_password(self, service: str, username: str) -> str | None:
        self.reads += 1
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.passwords[(service, username)]
        except KeyError:
            raise keyring.errors.PasswordDeleteError("no such password") from None


class LockedKeyring(MemoryKeyring):
    """A keychain that exists but refuses to store anything."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.PasswordSetError(f"the keychain is locked (tried {password})")


class DeadBusKeyring(MemoryKeyring):
    """A Secret Service backend on a machine with no D-Bus session: fails on use."""

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.InitError("Failed to create the collection: no D-Bus session")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.InitError("Failed to create the collection: no D-Bus session")


@pytest.fixture
def restore_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    try:
        yield
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def memory(restore_keyring: None) -> MemoryKeyring:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


@pytest.fixture
def no_keychain(restore_keyring: None) -> None:
    keyring.set_keyring(fail.Keyring())  # type: ignore[no-untyped-call]


def test_keychain_first_then_environment(
    memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = Secrets()
    assert secrets.keychain_available()
    assert secrets.get("work", "openai") is None
    assert secrets.source("work", "openai") == "none"

    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment-000000")
    assert secrets.get("work", "openai") == "sk-from-the-environment-000000"
    assert secrets.source("work", "openai") == "environment"

    secrets.set("work", OPENAI_KEY)
    assert memory.passwords == {(SERVICE, "profile:work"): OPENAI_KEY}
    assert secrets.get("work", "openai") == OPENAI_KEY
    assert secrets.source("work", "openai") == "keychain"
    # Other profiles still fall back to the environment.
    assert secrets.get("home", "openai") == "sk-from-the-environment-000000"


def test_keys_stored_by_another_process_are_found(memory: MemoryKeyring) -> None:
    memory.passwords[(SERVICE, "profile:claude")] = ANTHROPIC_KEY
    secrets = Secrets()
    assert secrets.get("claude", "anthropic") == ANTHROPIC_KEY
    reads = memory.reads
    assert secrets.get("claude", "anthropic") == ANTHROPIC_KEY
    assert memory.reads == reads  # kept in memory after the first read


@pytest.mark.parametrize(
    ("provider", "variable"),
    [
        ("openai", "OPENAI_API_KEY"),
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("gemini", "GEMINI_API_KEY"),
    ],
)
def test_environment_variable_per_provider(
    memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, provider: str, variable: str
) -> None:
    monkeypatch.setenv(variable, f"  key-for-{provider}-123456  ")
    secrets = Secrets()
    assert secrets.get("default", provider) == f"key-for-{provider}-123456"
    assert Secrets.env_var(provider) == variable


def test_ollama_needs_no_key(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-ollama-0000000000")
    secrets = Secrets()
    assert secrets.get("local", "ollama") is None
    assert secrets.source("local", "ollama") == "none"
    assert Secrets.env_var("ollama") is None


def test_injected_environment_and_backend() -> None:
    backend = MemoryKeyring()
    secrets = Secrets(backend=backend, environ={"GEMINI_API_KEY": "AIza-test-value-1234"})
    assert secrets.get("g", "gemini") == "AIza-test-value-1234"
    secrets.set("g", "keychain-value-12345")
    assert backend.passwords[(SERVICE, "profile:g")] == "keychain-value-12345"
    assert secrets.get("g", "gemini") == "keychain-value-12345"


def test_delete(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = Secrets()
    secrets.set("work", OPENAI_KEY)
    secrets.delete("work")
    assert memory.passwords == {}
    assert secrets.get("work", "openai") is None
    secrets.delete("work")  # nothing there: fine
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-after-delete-0000000")
    assert secrets.source("work", "openai") == "environment"


def test_set_rejects_an_empty_key(memory: MemoryKeyring) -> None:
    with pytest.raises(ValueError, match="empty"):
        Secrets().set("work", "   ")
    assert memory.passwords == {}


def test_no_keychain_says_so(no_keychain: None, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = Secrets()
    assert not secrets.keychain_available()
    assert secrets.backend_name() == "no system keychain"
    with pytest.raises(ConfigError) as caught:
        secrets.set("claude", ANTHROPIC_KEY, provider="anthropic")
    error = caught.value
    assert error.message == (
        "No system keychain is available on this machine, so Rill cannot store the key."
    )
    assert error.action == "Set ANTHROPIC_API_KEY in the environment instead."
    assert ANTHROPIC_KEY not in str(error) and ANTHROPIC_KEY not in error.detail

    with pytest.raises(ConfigError) as generic:
        secrets.set("work", OPENAI_KEY)
    assert generic.value.action == (
        "Set OPENAI_API_KEY (or the provider's variable) in the environment instead."
    )

    # Reading still works from the environment, and deleting is a no-op.
    assert secrets.get("claude", "anthropic") is None
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    assert secrets.get("claude", "anthropic") == ANTHROPIC_KEY
    assert secrets.source("claude", "anthropic") == "environment"
    secrets.delete("claude")


def test_keychain_that_fails_on_use_counts_as_none(
    restore_keyring: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring.set_keyring(DeadBusKeyring())
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSyEnvironmentValue0123456789abcdef")
    secrets = Secrets()
    assert secrets.get("g", "gemini") == "AIzaSyEnvironmentValue0123456789abcdef"
    assert not secrets.keychain_available()
    with pytest.raises(ConfigError, match="No system keychain") as caught:
        secrets.set("g", "AIzaSyAnotherValue0123456789abcdefghij", provider="gemini")
    assert caught.value.action == "Set GEMINI_API_KEY in the environment instead."


def test_refusing_keychain_error_never_contains_the_key(restore_keyring: None) -> None:
    keyring.set_keyring(LockedKeyring())
    secrets = Secrets()
    assert secrets.keychain_available()
    with pytest.raises(ConfigError) as caught:
        secrets.set("work", OPENAI_KEY, provider="openai")
    error = caught.value
    assert "refused to store the key" in error.message
    assert error.action == (
        "Unlock the keychain and try again, or set OPENAI_API_KEY in the environment instead."
    )
    assert "PasswordSetError" in error.detail
    for text in (str(error), error.message, error.action, error.detail, repr(error.args)):
        assert OPENAI_KEY not in text
    assert error.__cause__ is None and error.__suppress_context__


def test_no_key_is_written_to_any_file(memory: MemoryKeyring, rill_home: Path) -> None:
    secrets = Secrets()
    secrets.set("work", OPENAI_KEY)
    secrets.get("work", "openai")
    if rill_home.exists():
        for path in rill_home.rglob("*"):
            if path.is_file():
                assert OPENAI_KEY.encode() not in path.read_bytes(), path


def test_every_key_handed_out_is_registered(
    memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = "sk-registered-from-env-0000000000"
    from_keychain = "keychain-only-secret-value-42"
    monkeypatch.setenv("OPENAI_API_KEY", from_env)
    memory.passwords[(SERVICE, "profile:k")] = from_keychain
    secrets = Secrets()
    secrets.get("other", "openai")
    secrets.get("k", "openai")
    assert from_env in known_secrets()
    assert from_keychain in known_secrets()


def test_backend_name_is_readable(memory: MemoryKeyring) -> None:
    assert Secrets().backend_name()
    assert Secrets().backend_name() != "no system keychain"


def test_key_lookup_fits_the_engine(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    memory.passwords[(SERVICE, "profile:work")] = OPENAI_KEY
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    lookup = key_lookup(Secrets())

    def request(provider: str, profile: str) -> ChatRequest:
        return ChatRequest(
            provider=provider,  # type: ignore[arg-type]
            base_url="http://127.0.0.1:1",
            model="m",
            messages=(Message("user", "hi"),),
            profile=profile,
        )

    assert lookup(request("openai", "work")) == OPENAI_KEY
    assert lookup(request("anthropic", "claude")) == ANTHROPIC_KEY
    assert lookup(request("openai", "nobody")) is None
    assert lookup(request("ollama", "local")) is None


def test_redact_known_secrets_and_key_shapes() -> None:
    text = (
        f"key={OPENAI_KEY} again {OPENAI_KEY}; anthropic {ANTHROPIC_KEY}; "
        "google AIzaSyD-0123456789abcdefghijklmnopqrstu; custom hunter2hunter2; "
        "short abc; task-name-is-not-a-key; sk-short"
    )
    masked = redact(text, ["hunter2hunter2", "abc", ""])
    assert OPENAI_KEY not in masked and ANTHROPIC_KEY not in masked
    assert "AIzaSyD-0123456789" not in masked
    assert "hunter2hunter2" not in masked
    assert masked.count(f"sk-proj-{MASK}") == 2
    assert f"sk-ant-{MASK}" in masked
    assert f"AIza{MASK}" in masked
    assert f"custom {MASK};" in masked
    assert "short abc" in masked  # too short to be treated as a secret
    assert "task-name-is-not-a-key" in masked
    assert "sk-short" in masked


def test_redact_masks_unknown_values_of_known_shapes() -> None:
    shaped = "sk-" + "x" * 40
    assert redact(f"Bearer {shaped}", []) == f"Bearer sk-{MASK}"
    assert redact("", ["whatever-secret"]) == ""


def test_register_secret_ignores_short_and_empty_values() -> None:
    register_secret(None)
    register_secret("")
    register_secret("  tiny ")
    assert "tiny" not in known_secrets()
    register_secret("  a-long-enough-secret  ")
    assert "a-long-enough-secret" in known_secrets()
    secrets = known_secrets()
    assert list(secrets) == sorted(secrets, key=len, reverse=True)
