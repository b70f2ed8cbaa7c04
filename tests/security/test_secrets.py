"""Secrets at rest and in what the proxy shows: file modes, fingerprints, redaction.

The session-wide leak scan (tests/conftest.py) checks every log and CLI
output of the run for every secret the sandboxes issued; these tests check
the specific places a secret could surface.
"""

from __future__ import annotations

import json
import logging
import os
import stat

import structlog

from proxy import log as proxy_log
from proxy.tokens import FileStore

from ..conftest import LOG_DIR, configure_session_logging, run_cli, write_config
from ..secret_scan import scan_logs
from .conftest import Rig


async def test_readable_token_file_is_repaired_with_a_warning(rig: Rig):
    """A token file found group/world readable is set back to 0600, and a warning says so."""
    path = rig.config.token_path
    os.chmod(path, 0o644)
    assert await FileStore(path).load() == rig.token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    warnings = [
        json.loads(line)
        for line in (LOG_DIR / "in-process.log").read_text().splitlines()
        if "token_file_permissions_repaired" in line and str(path) in line
    ]
    assert [(w["level"], w["mode"]) for w in warnings] == [("warning", "0o644")]


async def test_token_state_and_metrics_show_a_fingerprint_only(rig: Rig):
    """`/-/token` and `/-/metrics` name the token by fingerprint, never by value."""
    await rig.proxy.get("/api/v1/user")
    state = await (await rig.proxy.get("/-/token")).text()
    metrics = await (await rig.proxy.get("/-/metrics")).text()
    assert json.loads(state)["fingerprint"] == rig.token.fingerprint
    for shown in (state, metrics):
        assert rig.token.access_token not in shown
        assert rig.token.refresh_token not in shown
        assert rig.config.tower.client_secret not in shown


async def test_status_shows_a_fingerprint_only(rig: Rig, tmp_path):
    """`tower-proxy status` (text and JSON) never prints a token."""
    toml = write_config(rig.config, tmp_path / "status.toml")
    for extra in ((), ("--json",)):
        code, out, err = await run_cli(
            "status", "--config", str(toml), *extra, log_name="security-status"
        )
        assert code == 0
        assert rig.token.fingerprint in out
        assert rig.token.access_token not in out + err
        assert rig.token.refresh_token not in out + err


def test_aiohttp_records_are_redacted_in_message_args_extra_and_traceback(tmp_path):
    """aiohttp's own stdlib records pass the same redaction as our events, tracebacks too."""
    path = tmp_path / "aiohttp.log"
    secret = "aiohttp-secret-5a4b3c2d1e0f9a8b"
    with path.open("w") as stream:
        try:
            proxy_log.configure("debug", "json", stream=stream)
            proxy_log.SECRETS.add(secret)
            server = logging.getLogger("aiohttp.server")
            try:
                raise ValueError(f"upstream said Authorization: Bearer {secret}")
            except ValueError:
                server.exception("Error handling request to %s", f"/x?access_token={secret}")
            logging.getLogger("aiohttp.client").warning(
                "retrying", extra={"headers": f"X-Proxy-Key: {secret}"}
            )
            logging.getLogger("aiohttp.access").warning('"GET /?code=%s HTTP/1.1" 200', secret)
            structlog.get_logger("proxy.test").warning("event", client_secret=secret)
        finally:
            configure_session_logging()
    lines = path.read_text().splitlines()
    assert len(lines) == 4
    assert scan_logs(tmp_path, {secret}) == []
    assert all("[redacted]" in line for line in lines)
