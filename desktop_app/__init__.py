"""Rill: a native desktop chat client for large language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rill-chat")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

APP_NAME = "Rill"
