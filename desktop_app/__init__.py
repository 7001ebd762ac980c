"""Rill: a native desktop chat client for large language models."""

from typing import Any

APP_NAME = "Rill"


def __getattr__(name: str) -> Any:
    """``__version__``, read from the installed distribution when first asked for (reading
    package metadata costs start-up time and memory the window does not otherwise need)."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("rill-chat")
        except PackageNotFoundError:  # running from a source tree that is not installed
            value = "0.0.0"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
