"""The leak scan itself: it must find a secret when one is there."""

from __future__ import annotations

import logging

import structlog

from proxy import log as proxy_log

from .conftest import configure_session_logging
from .secret_scan import scan_logs


def test_scan_finds_a_secret_and_ignores_clean_lines(tmp_path):
    """A planted secret is reported with its file and line; clean files are not."""
    (tmp_path / "a.log").write_text("all clean\nstill clean\n")
    (tmp_path / "b.log").write_text("one\ntoken=abcdef0123456789 here\n")
    leaks = scan_logs(tmp_path, {"abcdef0123456789"})
    assert leaks == ["b.log:2: a secret (abcd…) appears"]


def test_redaction_masks_known_secrets_in_structlog_and_stdlib_records(tmp_path):
    """A registered secret never reaches a log file, from structlog or aiohttp's loggers."""
    path = tmp_path / "out.log"
    secret = "0123456789abcdef0123456789abcdef"
    with path.open("w") as stream:
        try:
            proxy_log.configure("debug", "json", stream=stream)
            proxy_log.SECRETS.add(secret)
            structlog.get_logger("t").info(
                "event", detail=f"got {secret}", authorization=f"Bearer {secret}"
            )
            logging.getLogger("aiohttp.server").error(
                "Error handling %s", f"?access_token={secret}"
            )
        finally:
            configure_session_logging()
    text = path.read_text()
    assert scan_logs(tmp_path, {secret}) == []
    assert text.count("[redacted]") == 3
