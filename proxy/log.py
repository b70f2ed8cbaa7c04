"""Logging: structlog for our events and for the stdlib records of aiohttp.

Every event passes `redact` before rendering: values under secret-looking
keys are replaced, and any known secret (tokens, codes, client secret, inbound
keys: registered with `SECRETS.add` the moment the process learns them) or
bearer credential inside any string is masked.  Logging is process-wide, so
the registry is too.  JSON when stderr is not a terminal, console otherwise.
"""

from __future__ import annotations

import logging
import re
import sys
from collections import deque
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

MASK = "[redacted]"
_SECRET_KEYS = frozenset(
    {
        "authorization",
        "access_token",
        "refresh_token",
        "token",
        "code",
        "captcha",
        "client_secret",
        "password",
        "proxy_key",
        "x-proxy-key",
        "cookie",
        "set-cookie",
        "secret",
    }
)
_PATTERNS = re.compile(
    r"(?i)(bearer\s+)[^\s\"',;]+"
    r"|((?:access_token|refresh_token|code|client_secret|captcha)=)[^&\s\"']+"
)


# No registered secret (>= 6 chars) nor pattern match ("code=x") fits in less.
_SHORTEST = 6


class SecretRegistry:
    """The secrets this process knows, most recent last, bounded."""

    def __init__(self, size: int = 64) -> None:
        self._secrets: deque[str] = deque(maxlen=size)

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            if len(secret) >= _SHORTEST and secret not in self._secrets:
                self._secrets.append(secret)

    def scrub(self, text: str) -> str:
        if len(text) < _SHORTEST:  # nothing to find: the common case of a log value
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _PATTERNS.sub(lambda m: (m.group(1) or m.group(2)) + MASK, text)


SECRETS = SecretRegistry()


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if key.lower() in _SECRET_KEYS and value:
            event[key] = MASK
        elif isinstance(value, str):
            event[key] = SECRETS.scrub(value)
        elif isinstance(value, BaseException):
            event[key] = SECRETS.scrub(repr(value))
    return event


def _shared_processors() -> list[Any]:
    # Level, logger name and timestamp come after `redact`: they carry no
    # secret, and scrubbing them was a tenth of a log line's cost.
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
        redact,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


class _NamedWriter(structlog.WriteLogger):
    """A structlog WriteLogger with the `name` that `add_logger_name` reads."""

    def __init__(self, stream: TextIO, name: str) -> None:
        super().__init__(stream)
        self.name = name


def _named_writer_factory(stream: TextIO) -> Any:
    def factory(*args: Any) -> _NamedWriter:
        return _NamedWriter(stream, str(args[0]) if args else "")

    return factory


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging (aiohttp's) through one pipeline."""
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    # Our own events go straight to the stream: the stdlib round trip (LogRecord,
    # handler, formatter, a second redact) was half the cost of a canonical log
    # line (bench/profile.py).  aiohttp's stdlib records still take that path.
    structlog.configure(
        processors=[*_shared_processors(), renderer],
        logger_factory=_named_writer_factory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *_shared_processors()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
