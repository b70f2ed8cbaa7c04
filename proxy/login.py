"""Authorizing once: from an authorization code to a stored token set.

The code comes from `--code`, from `--redirect-url` (the whole URL the browser
was sent to), or pasted on stdin (either form).  Two-factor accounts answer
`otp_required` first; the same exchange is then repeated with the one-time
code as `captcha`.  The new set is stored with generation + 1 under the
store's refresh lock, so a running proxy picks it up without a restart.
"""

from __future__ import annotations

import asyncio
import sys
import time
import webbrowser
from collections.abc import Awaitable, Callable
from typing import Any

from yarl import URL

from .errors import OAuthError, OtpRequired
from .oauth import OAuthClient
from .tokens import TokenSet, TokenStore

Ask = Callable[[str], Awaitable[str]]


def code_from_input(text: str, *, expected_state: str | None = None) -> str:
    """A bare code, or the `code` of a pasted redirect URL or query (checking `state`).

    A URL is always read as one: the browser's `?error=access_denied` must not
    be sent to the token endpoint as if it were a code."""
    text = text.strip()
    if not text:
        raise OAuthError("invalid_request", "no authorization code given")
    if "://" in text or text.startswith("?"):
        query = URL(text).query
    elif "code=" in text or "error=" in text:
        query = URL("?" + text).query
    else:
        return text  # a bare code
    if "error" in query:
        raise OAuthError(query["error"], query.get("error_description", ""))
    state = query.get("state")
    if expected_state is not None and state is not None and state != expected_state:
        raise OAuthError(
            "invalid_request", "the redirect URL's state does not match this login; start again"
        )
    code = query.get("code", "")
    if not code:
        raise OAuthError("invalid_request", "the redirect URL carries no code")
    return code


async def ask_stdin(prompt: str) -> str:
    print(prompt, end="", file=sys.stderr, flush=True)
    line: str = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise OAuthError("invalid_request", "no input on stdin")
    return line.strip()


def open_browser(url: str) -> bool:
    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


async def exchange(oauth: OAuthClient, code: str, ask: Ask) -> dict[str, Any]:
    try:
        return await oauth.exchange_code(code)
    except OtpRequired:
        captcha = await ask("Two-factor login: enter the one-time code Tower sent you: ")
        return await oauth.exchange_code(code, captcha=captcha)


async def store_login(
    store: TokenStore, response: dict[str, Any], *, clock: Callable[[], float] = time.time
) -> TokenSet:
    """Store a fresh login as the next generation, whatever is stored now."""
    async with store.refresh_lock():
        current = await store.load()
        generation = current.generation if current else 0
        new = TokenSet.from_grant(
            response, generation=generation + 1, now=clock(), obtained_by="login"
        )
        await store.save(new, expected_generation=generation)
    return new
