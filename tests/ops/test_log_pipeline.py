"""The fast log pipeline: same output as plain `redact` + render, cached loggers reconfigured.

A JSON event is rendered first and only goes through `redact` when the line
shows something it could change; the property test checks that the output
is byte for byte what `redact` then rendering gives, for events built from
secrets, bearer and `code=` patterns in every case and whitespace, escapes
and non-ASCII text.  The registry is swapped for a private one here, so that
these secrets never push the session's real ones out of the bounded registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from unittest import mock

import structlog
from hypothesis import example, given, settings
from hypothesis import strategies as st

from proxy import log as proxy_log

from ..conftest import configure_session_logging

POOL = [
    "0123456789abcdef" * 4,
    "fedcba9876543210" * 2,
    'quo"te\\back-secret',
    "tab\tnew\nline-secret",
    "ünïcødé-secret",
    "line\u2028sep-secret",
    "\ud800-lone-surrogate",
    "short6",
]
TRICKS = [
    "Bearer ", "bEaReR\t", "BEARER\u00a0", "bearer\u2003", "bearer\x1c", "bearer", "Bearer\\ ",
    "bearer\tabc", "BEARER\x0babc", "Bearer\x1fabc", "bearer\nabc", "bearer\u2028abc",
    "code=", "Code=", "CAPTCHA=", "access_token=", "acce\u017f\u017f_token=", "=", " ", "\\",
    '"', "\n", "é", "&", ";", "[redacted]",
]  # fmt: skip
KEYS = ["event", "path", "detail", "reason", "Token", "authorization", "Code", "x", "request_id"]

pieces = st.one_of(st.text(max_size=10), st.sampled_from(POOL), st.sampled_from(TRICKS))
strings = st.lists(pieces, max_size=5).map("".join)
values = st.one_of(
    strings,
    strings,
    st.integers(),
    st.just(2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    strings.map(ValueError),
    st.lists(strings, max_size=2),
)
events = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)


class _Named:
    name = "proxy.test"


@contextlib.contextmanager
def _registry(*secrets: str) -> Iterator[proxy_log.SecretRegistry]:
    registry = proxy_log.SecretRegistry()
    registry.add(*secrets)
    with mock.patch.object(proxy_log, "SECRETS", registry):
        yield registry


@settings(max_examples=1500, deadline=None)
@given(event=events, secrets=st.sets(st.sampled_from(POOL)), many=st.booleans())
@example(event={"detail": "bearer\tabc"}, secrets=set(), many=False)
@example(event={"detail": "Bearer\u2028abc"}, secrets=set(), many=False)
@example(event={"detail": "tab\tnew\nline-secret"}, secrets={POOL[3]}, many=False)
@example(event={"detail": "x", "y": ["0123456789abcdef" * 4]}, secrets={POOL[0]}, many=False)
def test_fast_json_path_renders_what_redact_then_render_does(event, secrets, many):
    """Checked line or redacted values: the same bytes, with no registered secret in a string."""
    extra = [f"padding-secret-{n:02d}" for n in range(proxy_log._LINE_CHECK_MAX)] if many else []
    with _registry(*secrets, *extra):
        event = {**event, "level": "info", "logger": "proxy.test"}
        fast = proxy_log._redact_and_render_json(_Named, "info", dict(event))
        slow = proxy_log._render_json(_Named, "info", proxy_log.redact(_Named, "info", dict(event)))
    assert fast == slow
    assert fast.isascii()
    rendered = json.loads(fast)
    for key, value in event.items():
        if key.lower() in {"token", "authorization", "code"} and value:
            assert rendered[key] == proxy_log.MASK
        elif isinstance(value, str | BaseException):
            assert not any(secret in rendered[key] for secret in secrets)


@contextlib.contextmanager
def _logging_to(stream: io.StringIO, level: str = "debug", fmt: str = "json") -> Iterator[None]:
    try:
        proxy_log.configure(level, fmt, stream=stream)
        yield
    finally:
        configure_session_logging()


def test_reconfiguring_reaches_a_logger_already_cached():
    """A logger used once keeps following `configure`: its stream, its level, its format."""
    logger = structlog.get_logger("proxy.cached")
    logger.info("first_use")  # cached from here on, in the session's log
    first, second = io.StringIO(), io.StringIO()
    with _logging_to(first, "warning"):
        logger.info("below_the_level")
        logger.warning("to_the_first", n=1)
        assert not logger.is_enabled_for(logging.INFO)
    with _logging_to(second, "info", "console"):
        logger.info("to_the_second", n=2)
    assert [json.loads(line)["event"] for line in first.getvalue().splitlines()] == ["to_the_first"]
    assert "to_the_second" in second.getvalue() and "n=2" in second.getvalue()
    assert not second.getvalue().startswith("{")  # the console renderer, not JSON


def test_lines_keep_their_fields_and_an_iso_utc_timestamp():
    """The canonical fields as given, then level, logger and an ISO-8601 UTC timestamp."""
    stream = io.StringIO()
    before = datetime.now(UTC)
    with _logging_to(stream):
        structlog.get_logger("proxy.request").info(
            "request", request_id="r1", status=200, duration_ms=1.5, error=None, refreshed=False
        )
    line = json.loads(stream.getvalue())
    assert list(line) == [
        "request_id", "status", "duration_ms", "error", "refreshed",
        "event", "level", "logger", "timestamp",
    ]  # fmt: skip
    assert line["event"] == "request" and line["level"] == "info"
    assert line["logger"] == "proxy.request" and line["duration_ms"] == 1.5
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["timestamp"])
    stamp = datetime.fromisoformat(line["timestamp"])
    assert abs((stamp - before).total_seconds()) < 5


def test_an_event_line_writes_what_structlog_writes():
    """`EventLine` (the canonical request line's shortcut) gives structlog's line: the same
    keys in the same order, secrets masked; bound contextvars, the console format and
    the level still take structlog's way."""
    fields = {"request_id": "line-secret-77aa", "path": "/api/v1/x", "status": 200, "error": None}
    line = proxy_log.EventLine("proxy.request", "request")
    by_structlog, by_line, quiet, console = (io.StringIO() for _ in range(4))
    with _registry("line-secret-77aa"):
        with _logging_to(by_structlog):
            structlog.get_logger("proxy.request").info("request", **fields)
        with _logging_to(by_line):
            line(dict(fields))
            with structlog.contextvars.bound_contextvars(scope="bound"):
                line(dict(fields))
        with _logging_to(quiet, "warning"):
            line(dict(fields))
        with _logging_to(console, "info", "console"):
            line(dict(fields))
    expected = json.loads(by_structlog.getvalue())
    plain, bound = (json.loads(text) for text in by_line.getvalue().splitlines())
    assert expected["request_id"] == proxy_log.MASK and "line-secret" not in by_line.getvalue()
    for got in (plain, bound):
        assert got.pop("timestamp") and expected.get("timestamp")
    expected.pop("timestamp")
    assert list(plain.items()) == list(expected.items())
    assert bound == {"scope": "bound", **expected}
    assert quiet.getvalue() == ""
    assert not console.getvalue().startswith("{") and "request" in console.getvalue()


def test_context_exceptions_and_odd_values_still_pass_redaction():
    """Bound contextvars, exc_info, non-ASCII and huge ints: rendered, ASCII, secrets masked."""
    stream = io.StringIO()
    with _registry("ctx-secret-4d5e6f"), _logging_to(stream):
        logger = structlog.get_logger("proxy.test")
        with structlog.contextvars.bound_contextvars(scope="ctx-secret-4d5e6f here"):
            logger.info("with_context")
        try:
            raise RuntimeError("failed with ctx-secret-4d5e6f")
        except RuntimeError:
            logger.exception("with_exception")
        logger.warning("odd", text="é → ✓", big=2**80, detail="Authorization: Bearer abc.def")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert stream.getvalue().isascii() and "ctx-secret-4d5e6f" not in stream.getvalue()
    assert lines[0]["scope"] == "[redacted] here"
    assert "RuntimeError: failed with [redacted]" in lines[1]["exception"]
    assert lines[1]["level"] == "error"
    assert lines[2]["text"] == "é → ✓" and lines[2]["big"] == 2**80
    assert lines[2]["detail"] == "Authorization: Bearer [redacted]"


def test_many_registered_secrets_are_each_masked():
    """Past the count checked on the whole line, every secret is still masked value by value."""
    secrets = [f"many-secret-{n:03d}-xyz" for n in range(3 * proxy_log._LINE_CHECK_MAX)]
    stream = io.StringIO()
    with _registry(*secrets), _logging_to(stream):
        logger = structlog.get_logger("proxy.test")
        for secret in secrets:
            logger.info("event", detail=f"a {secret} b", path="/short")
    assert not any(secret in stream.getvalue() for secret in secrets)
    assert stream.getvalue().count("a [redacted] b") == len(secrets)


def test_registry_masks_a_secret_holding_another_whole():
    """Longest first: a secret that contains a shorter one is masked entirely."""
    with _registry("abcdef", "xxabcdefyy") as registry:
        assert registry.scrub("1 xxabcdefyy 2 abcdef") == "1 [redacted] 2 [redacted]"


class _CountingStream(io.StringIO):
    """A text stream that counts its flushes (each one a write(2) on a real file)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


async def test_lines_of_several_loop_turns_share_one_flush():
    """Within a running loop, lines wait for one flush `delay` after the first of them."""
    stream = _CountingStream()
    write = proxy_log._line_writer(stream, delay=3600)  # never due within this test
    for n in range(3):
        write(f"line {n}")
        await asyncio.sleep(0)
    assert (stream.flushes, stream.getvalue()) == (0, "line 0\nline 1\nline 2\n")


async def test_a_line_written_while_a_flush_is_due_does_not_look_up_the_loop(monkeypatch):
    """On Python 3.11 `asyncio.get_running_loop()` is a getpid(2): once per flush, not per line."""
    lookups = []
    real = asyncio.get_running_loop

    def counting() -> asyncio.AbstractEventLoop:
        lookups.append(1)
        return real()

    stream = _CountingStream()
    write = proxy_log._line_writer(stream, delay=3600)
    monkeypatch.setattr(asyncio, "get_running_loop", counting)
    for n in range(5):
        write(f"line {n}")
    assert (len(lookups), stream.flushes) == (1, 0)


async def test_one_flush_for_the_lines_written_before_it_is_due():
    """delay 0: due at the loop's next turn; the lines written meanwhile share it."""
    stream = _CountingStream()
    write = proxy_log._line_writer(stream, delay=0)
    for n in range(3):
        write(f"line {n}")
    assert stream.flushes == 0
    await asyncio.sleep(0.001)  # the loop turns and runs what is due: no timing asserted
    assert (stream.flushes, stream.getvalue()) == (1, "line 0\nline 1\nline 2\n")
    write("line 3")
    await asyncio.sleep(0.001)
    assert stream.flushes == 2


def test_a_flush_due_on_an_ended_loop_is_scheduled_again_on_the_next():
    """A loop that ends before its flush is due must not leave later lines unflushed."""
    stream = _CountingStream()
    write = proxy_log._line_writer(stream, delay=0.5)

    async def line_then_wait(text: str, wait: float) -> None:
        write(text)
        await asyncio.sleep(wait)

    asyncio.run(line_then_wait("first", 0))  # ends long before its flush is due
    assert stream.flushes == 0
    asyncio.run(line_then_wait("second", 1.0))  # timers run in order: the flush first
    assert (stream.flushes, stream.getvalue()) == (1, "first\nsecond\n")


def test_without_a_loop_each_line_is_flushed_at_once():
    """The CLI has no running loop: a line is flushed as it is written."""
    stream = _CountingStream()
    write = proxy_log._line_writer(stream)
    write("one")
    write("two")
    assert (stream.flushes, stream.getvalue()) == (2, "one\ntwo\n")
