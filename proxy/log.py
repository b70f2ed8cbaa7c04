"""Logging: structlog for our events and for the stdlib records of aiohttp.

Every event passes `redact` before rendering: values under secret-looking
keys are replaced, and any known secret (tokens, codes, client secret, inbound
keys: registered with `SECRETS.add` the moment the process learns them) or
bearer credential inside any string is masked.  Logging is process-wide, so
the registry is too.  JSON when stderr is not a terminal, console otherwise.

Our own events are on the path of every request (one canonical line each),
so their pipeline is built for speed, under two rules:

- Loggers are cached on first use, and `configure` changes what every logger
  does in place (one processor list, one output, the level read at each
  call), so a later `configure` (tests make several) reaches cached loggers.
- A JSON event is rendered first and the line is checked for anything
  `redact` could change (`SecretRegistry.leaves_alone`); if it might, or the
  check cannot tell, the event passes `redact` and is rendered again.  The
  output is the same either way.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import io
import json
import logging
import re
import sys
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, TextIO

import orjson
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
# Up to this many secrets a rendered line is searched for each of them; past
# it, value by value is cheaper (a short value skips every longer secret).
_LINE_CHECK_MAX = 8
# Log lines reach the OS this long after they are written, at the latest (in
# a running loop; at once without one).  Exit flushes the rest (`flush()`
# before an os._exit); a SIGKILL loses at most this much.
FLUSH_DELAY = 0.02


class SecretRegistry:
    """The secrets this process knows, most recent last, bounded."""

    def __init__(self, size: int = 64) -> None:
        self._secrets: deque[str] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._index = _SecretIndex.of(())

    def add(self, *secrets: str) -> None:
        with self._lock:
            new = [s for s in dict.fromkeys(secrets) if len(s) >= _SHORTEST]
            new = [s for s in new if s not in self._secrets]
            if new:  # a TokenSet re-adds its tokens each time one is built
                self._secrets.extend(new)
                self._index = _SecretIndex.of(self._secrets)

    def scrub(self, text: str) -> str:
        size = len(text)
        if size < _SHORTEST:  # nothing to find: the common case of a log value
            return text
        index = self._index  # read once: `add` (in any thread) replaces it whole
        if size >= index.shortest:
            for secret in index.longest_first[bisect_left(index.negated_lengths, -size) :]:
                if secret in text:
                    text = text.replace(secret, MASK)
        if _may_match_patterns(text):
            return _PATTERNS.sub(_mask_match, text)
        return text

    def leaves_alone(self, line: str) -> bool:
        """True only if `scrub` would change no string inside this line of orjson output.

        orjson escapes character by character, so a string holding a secret
        renders to a line holding the secret's escaped form; "=" and "bearer"
        (any case) render as they are, and so does the whitespace that must
        follow "bearer" — as " ", as non-ASCII, or as an escape with "\\".
        """
        index = self._index
        if len(index.escaped) > _LINE_CHECK_MAX or "=" in line:
            return False
        if (" " in line or "\\" in line or not line.isascii()) and "bearer" in line.lower():
            return False
        for secret in index.escaped:  # noqa: SIM110 (a plain loop is the fastest here)
            if secret in line:
                return False
        return True


@dataclass(frozen=True, slots=True)
class _SecretIndex:
    """The registry arranged for `scrub` and `leaves_alone`; replaced, never changed."""

    # Longest first, so that a secret containing another is masked whole, and
    # their negated lengths for bisect: `scrub` skips those longer than the text.
    longest_first: tuple[str, ...]
    negated_lengths: tuple[int, ...]
    shortest: int
    # As they appear inside a JSON string from orjson.  (One orjson cannot
    # encode has a lone surrogate: any string holding it fails to encode too.)
    escaped: tuple[str, ...]

    @classmethod
    def of(cls, secrets: Iterable[str]) -> _SecretIndex:
        ordered = tuple(sorted(secrets, key=len, reverse=True))
        return cls(
            longest_first=ordered,
            negated_lengths=tuple(-len(s) for s in ordered),
            shortest=len(ordered[-1]) if ordered else sys.maxsize,
            escaped=tuple(e for e in map(_json_escaped, ordered) if e is not None),
        )


def _json_escaped(secret: str) -> str | None:
    try:
        return orjson.dumps(secret).decode()[1:-1]
    except orjson.JSONEncodeError:
        return None


def _may_match_patterns(text: str) -> bool:
    # Every match of _PATTERNS holds "=" or "bearer"; no character but b, e, a,
    # r and their capitals matches those letters case-insensitively.
    return "=" in text or "bearer" in text.lower()


def _mask_match(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2)) + MASK


SECRETS = SecretRegistry()

# Keys seen that do not look secret.  They come from our code and from stdlib
# records' `extra`; the bound keeps a stream of odd keys from growing it.
_CLEAN_KEYS: set[str] = set()
_MAX_CLEAN_KEYS = 4096
# Values of these exact types hold no string: only their key can make them secret.
_PLAIN = frozenset({int, float, bool, type(None)})


def _is_secret_key(key: str) -> bool:
    if key.lower() in _SECRET_KEYS:
        return True
    if len(_CLEAN_KEYS) < _MAX_CLEAN_KEYS:
        _CLEAN_KEYS.add(key)
    return False


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _CLEAN_KEYS.issuperset(event):
        for key, value in event.items():
            if key not in _CLEAN_KEYS and _is_secret_key(key) and value:
                event[key] = MASK
    scrub = SECRETS.scrub
    for key, value in event.items():
        kind = value.__class__
        if kind is str:
            if len(value) >= _SHORTEST:
                event[key] = scrub(value)
        elif kind in _PLAIN:
            continue
        elif isinstance(value, str):
            event[key] = scrub(value)
        elif isinstance(value, BaseException):
            event[key] = scrub(repr(value))
    return event


class _UtcClock:
    """ISO-8601 UTC timestamps with microseconds; the part up to the second is
    formatted once a second (structlog's TimeStamper was a tenth of a log line)."""

    __slots__ = ("_second",)

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def now(self) -> str:
        second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        cached, prefix = self._second  # one tuple: a consistent pair in any thread
        if second != cached:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, prefix)
        return "%s.%06dZ" % (prefix, nanoseconds // 1000)  # noqa: UP031 (faster than f"")


_CLOCK = _UtcClock()
_LEVEL_NAMES = {"warn": "warning", "exception": "error"}
# The method names structlog hands on to the wrapped logger, with their levels.
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# structlog's registry of the contextvars `bind_contextvars` made: while it is
# empty there is nothing to merge, and the context is not walked.  (Private: if
# a structlog release drops it, every event is merged as before.)
_BOUND_CONTEXTVARS: dict[str, Any] | None = getattr(structlog.contextvars, "_CONTEXT_VARS", None)


def _merge_contextvars(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    if _BOUND_CONTEXTVARS is not None and not _BOUND_CONTEXTVARS:
        return event
    return structlog.contextvars.merge_contextvars(logger, method, event)


def _format_exc_info(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    if "exc_info" not in event:
        return event
    return structlog.processors.format_exc_info(logger, method, event)


def _add_level_logger_and_time(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    # `add_log_level`, `add_logger_name` and a UTC TimeStamper in one step.
    event["level"] = _LEVEL_NAMES.get(method, method)
    event["logger"] = logger.name
    event["timestamp"] = _CLOCK.now()
    return event


def _timestamp(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Any:
    event["timestamp"] = _CLOCK.now()
    return event


def _fallback(value: Any) -> Any:
    """Other types as structlog's JSONRenderer rendered them: `__structlog__()`, else repr()."""
    if isinstance(value, BaseException):
        return repr(value)  # what `redact` scrubs: both JSON paths agree
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


# Dataclasses and datetimes go to `_fallback` (repr), as with the stdlib encoder.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def _orjson_line(event: MutableMapping[str, Any]) -> str | None:
    try:
        return orjson.dumps(event, default=_fallback, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return None  # integers past 64 bits, non-str keys, lone surrogates


def _ascii_json(event: MutableMapping[str, Any]) -> str:
    # The stdlib encoder escapes to ASCII, so a stream of any encoding takes it.
    return json.dumps(event, default=_fallback, separators=(",", ":"))


def _render_json(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> str:
    line = _orjson_line(event)
    return line if line is not None and line.isascii() else _ascii_json(event)


def _redact_and_render_json(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
    """`redact` then `_render_json`, the first skipped when the line shows it has nothing to do."""
    if _CLEAN_KEYS.issuperset(event):
        line = _orjson_line(event)
        if line is not None and SECRETS.leaves_alone(line):
            return line if line.isascii() else _ascii_json(event)
    return _render_json(logger, method, redact(logger, method, event))


def _our_processors(renderer: Any) -> list[Any]:
    if renderer is _render_json:
        # Level, logger name and timestamp are in the line that is checked:
        # they carry no secret, and checking them costs next to nothing.
        steps: list[Any] = [_add_level_logger_and_time, _redact_and_render_json]
    else:
        # ... and after `redact` here: scrubbing them was a tenth of a line's cost.
        steps = [redact, _add_level_logger_and_time, renderer]
    return [_merge_contextvars, _format_exc_info, *steps]


def _foreign_pre_chain() -> list[Any]:
    # The same steps for aiohttp's stdlib records; structlog's level and logger
    # name processors read those from the LogRecord.
    return [
        structlog.stdlib.ExtraAdder(),
        structlog.contextvars.merge_contextvars,
        structlog.processors.format_exc_info,
        redact,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _timestamp,
    ]


@dataclass(frozen=True, slots=True)
class _Output:
    """Where our rendered events go, and from which level: set by `configure`."""

    write: Callable[[str], None]
    level: int
    flush: Callable[[], None]
    json: bool = True  # events rendered by `_render_json` (else structlog's console renderer)


def _line_writer(stream: TextIO, delay: float = FLUSH_DELAY) -> Callable[[str], None]:
    """Write one line; hand it to the OS within `delay` seconds.

    Under load the lines of many requests go out in one write(2) instead of
    one each: a flush per loop turn was still a tenth of a small request's
    CPU under wrk when the turns are short.  Without a running loop (the
    CLI) each line is flushed at once.
    """
    write, flush = stream.write, stream.flush
    pending_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is due on

    def flush_now() -> None:
        nonlocal pending_on
        pending_on = None
        flush()

    def write_line(line: str) -> None:
        write(line + "\n")

    def write_and_flush(line: str) -> None:
        nonlocal pending_on
        write(line + "\n")
        if pending_on is not None and pending_on.is_running():
            return  # a flush is due already; asking for the running loop is a getpid(2)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            flush()
            return
        if pending_on is not loop:  # none due, or due on a loop that has ended since
            pending_on = loop
            loop.call_later(delay, flush_now)

    # A line-buffered stream (stderr, a terminal) flushes at the newline itself.
    unlocked = write_line if getattr(stream, "line_buffering", False) else write_and_flush
    if type(stream) is io.TextIOWrapper:
        # Its write() adds the whole line to its buffer in one step under the
        # GIL: lines from several threads cannot interleave, no lock needed.
        return unlocked
    lock = threading.Lock()

    def locked(line: str) -> None:
        with lock:
            unlocked(line)

    return locked


_OUTPUT = _Output(write=_line_writer(sys.stderr), level=logging.INFO, flush=sys.stderr.flush)
_PROCESSORS: list[Any] = []  # the one list for good: cached loggers hold it


class _BoundLogger(structlog.make_filtering_bound_logger(logging.NOTSET)):  # type: ignore[misc]
    """structlog's filtering logger, except that the level is read at each call
    (from `_OUTPUT`) and an event is built and processed in one step."""

    def _proxy_to_logger(self, method_name: str, event: str | None = None, **event_kw: Any) -> Any:
        # The way of log() and the async methods; those of `_level_method` skip it.
        if _METHOD_LEVELS.get(method_name, logging.CRITICAL) < _OUTPUT.level:
            return None
        return self._emit(method_name, event, event_kw)

    def _emit(self, method_name: str, event: str | None, event_kw: dict[str, Any]) -> Any:
        event_dict: Any = {**self._context, **event_kw} if self._context else event_kw
        if event is not None:
            event_dict["event"] = event
        logger = self._logger
        try:
            # A copy: `configure` in another thread may refill the list meanwhile,
            # and a chain half old, half new could miss `redact`.
            for processor in tuple(self._processors):
                event_dict = processor(logger, method_name, event_dict)
        except structlog.DropEvent:
            return None
        return getattr(logger, method_name)(event_dict)  # our renderers return str

    def is_enabled_for(self, level: int) -> bool:
        return level >= _OUTPUT.level

    def get_effective_level(self) -> int:
        return _OUTPUT.level


def _level_method(name: str, level: int) -> Callable[..., Any]:
    def method(self: _BoundLogger, event: str, *args: Any, **kw: Any) -> Any:
        if level < _OUTPUT.level:
            return None
        if args:  # structlog's %-interpolation, a single mapping included
            only = args[0] if len(args) == 1 else None
            event = event % (only if isinstance(only, Mapping) and only else args)
        return self._emit(name, event, kw)

    method.__name__ = method.__qualname__ = name
    return method


for _name, _level in _METHOD_LEVELS.items():
    setattr(_BoundLogger, _name, _level_method(_name, _level))
for _alias, _name in (("warn", "warning"), ("fatal", "critical"), ("msg", "info")):
    setattr(_BoundLogger, _alias, getattr(_BoundLogger, _name))


class EventLine:
    """One info event logged many times a second (the canonical request line).

    The line `structlog.get_logger(logger).info(event, **fields)` would
    write — the steps `_our_processors` gives the JSON output, so keep the
    two in step — without structlog's call chain, about a seventh of the
    line's cost (bench.instructions: some 6k of 303k per request).  The
    console renderer and bound contextvars take structlog's way.
    """

    __slots__ = ("_event", "_logger", "_writer")

    def __init__(self, logger: str, event: str) -> None:
        self._event = event
        self._logger: Any = structlog.get_logger(logger)
        self._writer = _Writer(logger)

    def __call__(self, fields: dict[str, Any]) -> None:
        output = _OUTPUT
        if output.level > logging.INFO:
            return
        if not output.json or _BOUND_CONTEXTVARS is None or _BOUND_CONTEXTVARS:
            self._logger.info(self._event, **fields)
            return
        fields["event"] = self._event
        _add_level_logger_and_time(self._writer, "info", fields)
        output.write(_redact_and_render_json(None, "info", fields))


class _Writer:
    """What structlog wraps: writes to the current output, carries the logger's name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        _OUTPUT.write(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _writer_factory(*args: Any) -> _Writer:
    return _Writer(str(args[0]) if args else "")


_BUFFERED: dict[int, TextIO] = {}


def _block_buffered(stream: TextIO) -> TextIO:
    """stderr off a terminal as a block-buffered stream over the same descriptor.

    Python makes stderr line-buffered: one write(2) per log line.  Our lines
    are flushed within FLUSH_DELAY instead (`_line_writer`), and at exit; only
    a SIGKILL can lose the last FLUSH_DELAY's.
    """
    if stream is not sys.stderr or stream.isatty():
        return stream
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return stream
    if fd not in _BUFFERED:
        out = open(  # noqa: SIM115 (lives as long as the process)
            fd, "w", buffering=64 * 1024, encoding="utf-8", errors="backslashreplace", closefd=False
        )
        atexit.register(out.flush)
        _BUFFERED[fd] = out
    return _BUFFERED[fd]


def flush() -> None:
    """Hand the lines written so far to the OS now: before `os._exit`, which skips atexit.

    Never raises: a log that cannot be written must not keep a process from exiting.
    """
    with contextlib.suppress(Exception):
        _OUTPUT.flush()


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging (aiohttp's) through one pipeline."""
    global _OUTPUT
    stream = _block_buffered(stream or sys.stderr)
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty()) if use_console else _render_json
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    # Our own events go straight to the stream: the stdlib round trip (LogRecord,
    # handler, formatter, a second redact) was half the cost of a canonical log
    # line (bench/profile.py).  aiohttp's stdlib records still take that path.
    _OUTPUT = _Output(
        write=_line_writer(stream),
        level=numeric,
        flush=stream.flush,
        json=renderer is _render_json,
    )
    _PROCESSORS[:] = _our_processors(renderer)
    structlog.configure(
        processors=_PROCESSORS,
        logger_factory=_writer_factory,
        wrapper_class=_BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_foreign_pre_chain(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
