"""The sandbox's authorize page, followed like a browser without JavaScript, to a stored token.

A plain HTTP client reads the HTML, fills in the form's fields, presses
Approve (posts the form) and hands the result to `tower-proxy login`: the
redirect URL for an https callback, the code on the page for the oob URI.
Nothing here writes the code or the redirect URL into a log.
"""

from __future__ import annotations

import asyncio
import dataclasses
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp

from proxy.config import Config

from ..conftest import (
    LOG_DIR,
    PYTHON,
    ROOT,
    ProxyFactory,
    SandboxHandle,
    run_cli,
    write_config,
)

CALLBACK = "https://localhost/callback"


class _Page(HTMLParser):
    """The first form (action, method, fields, Approve button) and the oob code element."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.method = ""
        self.fields: dict[str, str] = {}
        self.approve: tuple[str, str] | None = None
        self.code = ""
        self._in_code = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if tag == "form" and not self.action:
            self.action, self.method = attr.get("action", ""), attr.get("method", "get")
        elif tag == "input" and attr.get("type") == "hidden":
            self.fields[attr["name"]] = attr.get("value", "")
        elif tag == "button" and attr.get("value") == "approve":
            self.approve = (attr["name"], attr["value"])
        self._in_code = tag == "code" and attr.get("id") == "authorization_code"

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.code += data.strip()

    def handle_endtag(self, tag: str) -> None:
        self._in_code = False


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


async def _approve(session: aiohttp.ClientSession, authorize_url: str) -> aiohttp.ClientResponse:
    """GET the consent page, then submit its form with the Approve button, as a browser does."""
    async with session.get(authorize_url) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        html = await response.text()
    assert "<script" not in html.lower()  # works without JavaScript
    page = _parse(html)
    assert page.method.lower() == "post" and page.approve is not None
    form = {**page.fields, page.approve[0]: page.approve[1]}
    target = urljoin(authorize_url, page.action)
    return await session.post(target, data=form, allow_redirects=False)


async def test_approve_form_redirect_url_pasted_into_login(
    sandbox: SandboxHandle, config: Config, tmp_path: Path, make_proxy: ProxyFactory
):
    """login prints the URL; Approve redirects with code and state; pasting it stores a token."""
    config = dataclasses.replace(
        config, tower=dataclasses.replace(config.tower, redirect_uri=CALLBACK)
    )
    path = write_config(config, tmp_path / "login.toml")
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "proxy", "login", "--config", str(path), "--no-browser",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None
    try:
        authorize_url = ""
        while not authorize_url:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "login exited before printing the authorize URL"
            if "/oauth/authorize?" in line:
                authorize_url = line.strip()
        async with aiohttp.ClientSession() as session:
            response = await _approve(session, authorize_url)
        assert response.status == 302
        location = response.headers["Location"]
        query = parse_qs(urlsplit(location).query)
        assert location.startswith(CALLBACK + "?")
        assert query["state"] == parse_qs(urlsplit(authorize_url).query)["state"]
        out, err = await asyncio.wait_for(proc.communicate(f"{location}\n".encode()), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    (LOG_DIR / "client-authorize-login.log").write_bytes(out + err)

    assert proc.returncode == 0, err.decode()
    assert b"Logged in as alice@example.com" in out
    assert (await sandbox.stats())["token_requests"]["authorization_code"] == 1
    proxy = await make_proxy(config)
    async with proxy.get("/api/v1/user") as user:
        assert user.status == 200


async def test_approve_form_oob_code_page_then_login_code(
    sandbox: SandboxHandle, config: Config, tmp_path: Path, make_proxy: ProxyFactory
):
    """For the oob URI the approved form shows the code; `login --code` stores a working token."""
    path = write_config(config, tmp_path / "login.toml")
    authorize_url = (
        f"{sandbox.base}/oauth/authorize?client_id={config.tower.client_id}"
        "&redirect_uri=urn%3Aietf%3Awg%3Aoauth%3A2.0%3Aoob&response_type=code&state=s1"
    )
    async with aiohttp.ClientSession() as session:
        response = await _approve(session, authorize_url)
        assert response.status == 200
        code = _parse(await response.text()).code
    assert code

    rc, out, err = await run_cli("login", "--config", str(path), "--code", code)

    assert rc == 0, err
    assert "Logged in as alice@example.com" in out
    proxy = await make_proxy(config)
    async with proxy.get("/api/v1/teams") as teams:
        assert teams.status == 200
