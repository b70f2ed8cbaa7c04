"""Logs: request ids both ways, malformed requests, console on a terminal."""

from __future__ import annotations

import json
import os
import re

import structlog

from proxy import log as proxy_log

from ..conftest import configure_session_logging, raw_request
from .conftest import json_lines, stop

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


async def _echo(proxy, **headers: str) -> tuple[str, str]:
    """(X-Request-ID the client got back, X-Request-ID Tower received)."""
    response = await proxy.post("/api/v1/_test/echo", data=b"{}", headers=headers)
    assert response.status == 200
    echoed = await response.json()
    return response.headers["X-Request-ID"], echoed["headers"]["X-Request-ID"]


async def test_generated_request_id_goes_upstream_and_back(proxy):
    """Without a client id the proxy makes one (32 hex), sends it to Tower and returns it."""
    back, upstream = await _echo(proxy)
    assert back == upstream and re.fullmatch(r"[0-9a-f]{32}", back)
    again, _ = await _echo(proxy)
    assert again != back  # one per request


async def test_client_request_id_is_kept_unless_unusable(proxy):
    """A client's id is passed on as it is; one with spaces or over 128 chars is replaced."""
    assert await _echo(proxy, **{"X-Request-ID": "trace-42/a.b"}) == ("trace-42/a.b",) * 2
    for unusable in ("has space", "x" * 129):
        back, upstream = await _echo(proxy, **{"X-Request-ID": unusable})
        assert back == upstream and re.fullmatch(r"[0-9a-f]{32}", back)


async def test_malformed_request_is_logged_without_its_bytes(serve_process, config, logged_in):
    """A head the parser refuses: the proxy's JSON 400 and one JSON record saying why, no bytes."""
    process = await serve_process(config, "ops-malformed-log")
    head = (
        "GET /api/v1/user HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-Bad\x01: {logged_in.access_token}\r\nConnection: close\r\n\r\n"
    )
    response = await raw_request("127.0.0.1", process.port, head.encode())
    assert (response.status, response.json()["error"]) == (400, "bad_request")
    assert await stop(process) == 0
    assert logged_in.access_token not in process.log_path.read_text()
    lines = json_lines(process.log_path)
    records = [line for line in lines if line["event"] == "request_malformed"]
    assert len(records) == 1
    record = records[0]
    assert (record["logger"], record["level"]) == ("proxy.http", "info")
    assert record["reason"] == "the request cannot be parsed"
    assert record["timestamp"].endswith("Z")


def test_console_output_on_a_terminal():
    """format = auto on a terminal: readable `key=value` lines, not JSON, still redacted."""
    leader, follower = os.openpty()
    terminal = os.fdopen(follower, "w", buffering=1)
    secret = "console-secret-9c1d7e"
    try:
        proxy_log.configure("info", "auto", stream=terminal)
        proxy_log.SECRETS.add(secret)
        structlog.get_logger("proxy.request").info("request", status=200, detail=f"x {secret}")
        output = _ANSI.sub("", os.read(leader, 65536).decode())
    finally:
        configure_session_logging()
        terminal.close()
        os.close(leader)
    line = output.strip()
    assert "request" in line and "status=200" in line and "[proxy.request]" in line
    assert secret not in line and "[redacted]" in line
    try:
        json.loads(line)
    except ValueError:
        pass
    else:
        raise AssertionError(f"a terminal got JSON: {line}")
