"""The fault spec language: faults written as text, for ``--fault`` and a request header.

One parser for both: ``python -m desktop_app.simulator --fault 503x2`` queues faults for
the next chat requests, and a request carrying ``x-rill-sim-fault: 503x2`` fails itself
(the n-th identical request with that header takes the n-th fault; later ones are answered
normally, so a client's retries get through).
"""

from __future__ import annotations

import re
from dataclasses import replace

from desktop_app.simulator.protocols import CHAT_PROTOCOLS
from desktop_app.simulator.server import FAULT_HEADER, Fault

__all__ = ["FAULT_HEADER", "SPEC_HELP", "FaultSpecError", "parse_faults"]

SPEC_HELP = """\
A fault spec is one or more faults separated by commas; each applies to one chat request,
in order:

  FAULT    = WHAT [xCOUNT] [:OPTION]...
  WHAT     = STATUS        answer with this HTTP error status (400-599), e.g. 503 or 429
             drop@N        cut the connection after N tokens
             stall@N       go silent after N tokens (for an hour, or the duration given)
             malformed@N   send a chunk that is not valid JSON after N tokens
             truncate@N    end the stream after N tokens without its finish marker
             error@N       send the provider's in-stream error event after N tokens
             ok            an ordinary answer (to put between faults)
  xCOUNT   = the same fault for COUNT requests in a row (503x2)
  OPTION   = retry-after=SECONDS     the wait a 429 or 503 asks for (Retry-After)
             retry-after-ms=MS       the same in milliseconds (retry-after-ms)
             DURATION                how long a stall lasts: 5s, 500ms, 2m
             delay=DURATION          wait this long before answering at all
             on=PROTOCOL             only requests of openai, ollama, anthropic or gemini

Examples: 503x2   429:retry-after=2   drop@20   stall@10:5s   malformed@5   ok,503,drop@40
"""

_FAULT = re.compile(
    r"(?P<what>\d{3}|ok|(?P<kind>drop|stall|malformed|truncate|error)@(?P<at>\d+))"
    r"(?:x(?P<count>\d+))?"
)
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>ms|s|m)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}
MAX_COUNT = 1000
"""The most requests one fault may repeat for."""
MAX_SPEC_CHARS = 500
"""The longest fault spec read (a header is outside text)."""


class FaultSpecError(ValueError):
    """A fault spec that does not follow the language (the message says where)."""


def parse_faults(spec: str) -> list[Fault]:
    """The faults ``spec`` names, in order (``503x2`` is two faults)."""
    faults: list[Fault] = []
    if not spec.strip():
        raise FaultSpecError("the fault spec is empty; try 503x2, drop@20 or stall@10:5s")
    if len(spec) > MAX_SPEC_CHARS:
        raise FaultSpecError(f"the fault spec is longer than {MAX_SPEC_CHARS} characters")
    for part in spec.split(","):
        fault, count = _parse_one(part.strip())
        faults.extend([fault] * count)
    return faults


def _parse_one(part: str) -> tuple[Fault, int]:
    text = _quoted(part)
    head, *options = part.split(":")
    match = _FAULT.fullmatch(head.strip())
    if match is None:
        raise FaultSpecError(
            f"{text} is not a fault: use a status (503), drop@N, stall@N, malformed@N, "
            "truncate@N, error@N or ok, optionally followed by xCOUNT"
        )
    count = int(match["count"]) if match["count"] else 1
    if not 1 <= count <= MAX_COUNT:
        raise FaultSpecError(f"{text}: the count must be between 1 and {MAX_COUNT}")
    kind = match["kind"]
    fault = Fault()
    if kind is None and match["what"] != "ok":
        status = int(match["what"])
        if not 400 <= status <= 599:
            raise FaultSpecError(f"{text}: a status must be an error, 400 to 599")
        fault = Fault(status=status)
    elif kind is not None:
        at = int(match["at"])
        fault = {
            "drop": Fault(drop_after=at),
            "stall": Fault(stall_after=at),
            "malformed": Fault(malformed_after=at),
            "truncate": Fault(truncate_after=at),
            "error": Fault(error_event_after=at),
        }[kind]
    for option in options:
        fault = _apply(fault, option.strip(), text)
    return fault, count


def _apply(fault: Fault, option: str, text: str) -> Fault:
    name, has_value, value = option.partition("=")
    name = name.strip().lower()
    value = value.strip()
    if not has_value:
        if fault.stall_after is None:
            raise FaultSpecError(
                f"{text}: {_quoted(option)} is not an option "
                "(a bare duration is how long a stall lasts)"
            )
        return replace(fault, stall_s=_duration(option, text))
    if name == "retry-after":
        return replace(fault, retry_after=_duration(value, text))
    if name == "retry-after-ms":
        return replace(fault, retry_after_ms=_number(value, text))
    if name == "delay":
        return replace(fault, first_byte_delay=_duration(value, text))
    if name == "on":
        for protocol in CHAT_PROTOCOLS:
            if value == protocol:
                return replace(fault, protocol=protocol)
        raise FaultSpecError(f"{text}: on= takes one of {', '.join(CHAT_PROTOCOLS)}")
    raise FaultSpecError(
        f"{text}: unknown option {_quoted(name)}; use retry-after, retry-after-ms, delay or on"
    )


def _quoted(text: str) -> str:
    """``text`` quoted for a message, cut short if long."""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _duration(value: str, text: str) -> float:
    match = _DURATION.fullmatch(value)
    if match is None:
        raise FaultSpecError(f"{text}: {_quoted(value)} is not a duration (5s, 500ms, 2m)")
    return float(match["number"]) * _UNITS[match["unit"]]


def _number(value: str, text: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise FaultSpecError(f"{text}: {_quoted(value)} is not a number") from None
    if not number >= 0 or number == float("inf"):
        raise FaultSpecError(f"{text}: {_quoted(value)} is not a number of milliseconds")
    return number
