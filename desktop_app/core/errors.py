"""Every failure a user can meet, each with a sentence a person understands and an action.

The classes say how the engine treats them: ``retryable`` errors are tried again under the
retry policy, everything else is reported at once.

An error never carries a secret: its text is masked (known API keys, URL credentials,
key-shaped strings) when it is made, and again by :func:`scrub` (which also masks what is
left of a key cut short); a server's words are masked before they are cut to length.
"""

from __future__ import annotations

import re
import time

from desktop_app.core.redaction import MASK, known_secrets, redact


class RillError(Exception):
    """Base of every error Rill reports. ``str(err)`` is the user-facing sentence."""

    retryable: bool = False
    counts_for_breaker: bool = False

    def __init__(
        self,
        message: str,
        *,
        action: str = "",
        status: int | None = None,
        detail: str = "",
    ) -> None:
        secrets = known_secrets()
        message, action, detail = (
            redact(t, secrets, prefixes=False) for t in (message, action, detail)
        )
        super().__init__(message)
        self.message = message
        self.action = action
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} {self.action}".strip()

    @property
    def kind(self) -> str:
        return type(self).__name__


class RetryableError(RillError):
    """A transient failure: the same request may well succeed if sent again."""

    retryable = True
    counts_for_breaker = True


class ConnectionFailed(RetryableError):
    pass


class ConnectionRefused(ConnectionFailed):
    """Nothing listens at a local address: the server is not running, and waiting for it
    would not start it, so this is not tried again (a refusing remote host is)."""

    retryable = False


class TimeoutFailure(RetryableError):
    pass


class ConnectTimeout(TimeoutFailure):
    pass


class FirstTokenTimeout(TimeoutFailure):
    pass


class StreamStalled(TimeoutFailure):
    pass


class ServerError(RetryableError):
    """408, 409, 5xx and 529 answers, and overloaded or server errors inside a stream."""


class RateLimited(RetryableError):
    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        action: str = "",
        status: int | None = 429,
        detail: str = "",
    ) -> None:
        super().__init__(message, action=action, status=status, detail=detail)
        self.retry_after_s = retry_after_s


class IncompleteStream(RetryableError):
    """The stream ended without the protocol's finish marker."""


class CorruptStream(RetryableError):
    """A chunk of the stream could not be parsed."""


class ReplyTooLarge(RillError):
    """An answer passed one of Rill's size limits; it is stopped there, keeping its text."""


class FatalError(RillError):
    """The request itself is wrong; sending it again would fail the same way."""


class AuthError(FatalError):
    pass


class NotFound(FatalError):
    pass


class BadRequest(FatalError):
    pass


class ContentRefused(FatalError):
    pass


class BudgetExceeded(FatalError):
    pass


class ConfigError(FatalError):
    pass


class WrongServer(FatalError):
    """The address answered, but not as the provider's API does (an HTML page, say)."""


class RateLimitTooLong(FatalError):
    """The server asked for a wait longer than the user allows."""


class CircuitOpenError(RillError):
    """The endpoint failed repeatedly; requests fail fast until ``until``."""

    def __init__(self, endpoint: str, until: float, now: float | None = None) -> None:
        """``now`` is read from the same clock as ``until`` (the engine's); wall time if omitted."""
        wait = max(0.0, until - (time.time() if now is None else now))
        super().__init__(
            f"This endpoint failed several times in a row; Rill will try it again in "
            f"{human_seconds(wait)}.",
            action="Pick another model or profile, or wait.",
        )
        self.endpoint = endpoint
        self.until = until


REDACTED = MASK


def scrub(error: RillError, secrets: tuple[str | None, ...]) -> RillError:
    """Remove secrets (API keys) from an error's text, whatever the server echoed back.

    Each of ``secrets`` and every known secret is masked, with any prefix of it at least
    eight characters long (what is left of a key where someone cut the text), and so are
    URL credentials. Short keys (4 to 7 characters) are masked where they occur whole.
    """
    every = (*secrets, *known_secrets())
    short = [s for s in secrets if s and 4 <= len(s) < 8]
    for name in ("message", "detail", "action"):
        text = redact(getattr(error, name), every)
        for secret in short:
            text = text.replace(secret, REDACTED)
        setattr(error, name, text)
    error.args = (error.message,)
    return error


def human_seconds(seconds: float) -> str:
    """A duration as people read it, the same way everywhere Rill shows one: milliseconds
    under a second ("40 ms"), then seconds with one decimal ("2.4 s"), then minutes.

    Rounding never reorders two durations: a shorter one never reads as longer.
    """
    seconds = max(0.0, seconds)
    ms = round(seconds * 1000)
    if ms < 1000:
        return f"{ms} ms"
    if seconds < 59.95:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def sentences(*parts: str) -> str:
    """Parts of a message as sentences: spaces collapsed, one full stop at each end."""
    out: list[str] = []
    for part in parts:
        text = " ".join(part.split())
        if not text:
            continue
        while text.endswith(".)") or text.endswith(".."):
            text = text[:-2] + text[-1] if text.endswith(".)") else text[:-1]
        end = text.rstrip("\"”’'")
        if not end or end[-1] not in ".!?…":
            text += "."
        out.append(text)
    return " ".join(out)


def error_for_status(
    status: int,
    server_message: str,
    *,
    provider: str,
    profile: str = "default",
    retry_after_s: float | None = None,
    error_type: str = "",
) -> RillError:
    """The one place that turns an HTTP status into Rill's error classes."""
    said = f' The server said: "{_clip(server_message)}"' if server_message else ""
    detail = f"{error_type}: {server_message}" if error_type else server_message
    if status == 429:
        wait = f" It asked to wait {human_seconds(retry_after_s)}." if retry_after_s else ""
        return RateLimited(
            f"The {provider} server is rate-limiting requests (429).{wait}",
            retry_after_s=retry_after_s,
            action="Rill waits and tries again.",
            detail=detail,
        )
    if status in (401, 403):
        what = "rejected" if status == 401 else "not allowed to do this"
        return AuthError(
            f"The API key was {what} ({status}).{said}",
            action=f"Check the key for profile '{profile}' in Settings.",
            status=status,
            detail=detail,
        )
    if status == 405:
        return NotFound(
            f"The {provider} server does not take this request at this address (405).{said}",
            action="Check the base URL and the provider.",
            status=status,
            detail=detail,
        )
    if status == 404:
        return NotFound(
            f"The {provider} server has no such model or path (404).{said}",
            action="Check the base URL and the model name.",
            status=status,
            detail=detail,
        )
    if status in (400, 422) or (400 <= status < 500 and status not in (408, 409)):
        return BadRequest(
            f"The {provider} server refused the request ({status}).{said}",
            action="Change the request (model, parameters or message length) and send again.",
            status=status,
            detail=detail,
        )
    overloaded = status == 529 or "overload" in error_type.lower()
    what = "is overloaded" if overloaded else "had a problem"
    return ServerError(
        f"The {provider} server {what} ({status}).{said}",
        action="Rill tries again.",
        status=status,
        detail=detail,
    )


_TRIES_AGAIN = re.compile(r"(?:[;,]\s*|\s*)Rill (?:waits and )?tries again\.?", re.IGNORECASE)


def final(error: RillError) -> RillError:
    """``error`` as the last word on a reply: its action no longer says Rill tries again
    (no further attempt follows), but what the person can do."""
    if not _TRIES_AGAIN.search(error.action):
        return error
    action = _TRIES_AGAIN.sub("", error.action).strip()
    if not action:
        if isinstance(error, RateLimited):
            action = "Wait a little, then send again."
        elif isinstance(error, ConnectionFailed | TimeoutFailure):
            action = "Check the network and the server, then send again."
        else:
            action = "Send again later; if it keeps happening, check the server."
    elif not action.endswith("."):
        action += "."
    error.action = action[0].upper() + action[1:]
    return error


def _clip(text: str, limit: int = 300) -> str:
    """``text`` on one line, masked, then cut to ``limit`` characters (masking first, so a
    cut never leaves part of a key behind)."""
    text = redact(" ".join(text.split()), known_secrets())
    return text if len(text) <= limit else text[: limit - 1] + "…"
