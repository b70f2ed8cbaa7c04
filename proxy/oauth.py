"""Tower's token endpoint: the authorization-code and refresh grants.

Follows SPEC section 1: form-encoded POSTs to `<oauth_url>/token`; the refresh
grant also sends `Authorization: Bearer <current access token>` as Tower's
guide documents; `otp_required` may come with 200 or 401.  Errors are
classified here once: `invalid_grant` is fatal (InvalidGrant), timeouts,
connection errors and 5xx are transient (TokenEndpointUnavailable), any
other OAuth error is OAuthError.  No secret is ever put in an exception.

The POSTs go out on the proxy's own HTTP/1.1 client (upstream.py), through
the egress proxy's CONNECT tunnel when one applies, each on a fresh
connection: grants are rare, and a POST lost on a kept-alive connection that
Tower closed meanwhile could not be sent again safely (a refresh token may
already have rotated).  aiohttp is not imported on this path: it cost a
serving proxy a quarter of its start-up (bench scenario 6).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from yarl import URL

from . import version
from .config import TowerConfig
from .egress import egress_for
from .errors import InvalidGrant, OAuthError, OtpRequired, TokenEndpointUnavailable
from .log import SECRETS
from .tokens.model import TokenSet
from .upstream import Origin, UpstreamError, UpstreamPool, UpstreamResponse

_TOKEN_FIELDS = ("access_token", "expires_in")
_MAX_ANSWER = 1024 * 1024  # a token answer is a few hundred bytes


def new_state() -> str:
    return secrets.token_urlsafe(16)


def authorize_url(tower: TowerConfig, *, state: str) -> str:
    query = {
        "client_id": tower.client_id,
        "redirect_uri": tower.redirect_uri,
        "response_type": "code",
        "state": state,
    }
    if tower.scopes:
        query["scope"] = tower.scopes
    return str(URL(tower.authorize_url).with_query(query))


def ssl_context(tower: TowerConfig) -> ssl.SSLContext:
    """Verification always on; `ca_file` adds to the system trust store."""
    context = ssl.create_default_context()
    if tower.ca_file:
        context.load_verify_locations(cafile=tower.ca_file)
    return context


class OAuthClient:
    """The grants against `tower.token_url`; `close()` (or `async with`) when done.

    `context`: the TLS context to use (default: `ssl_context(tower)`);
    `timeout`: seconds for a whole grant, connecting included.
    """

    def __init__(
        self,
        tower: TowerConfig,
        *,
        context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._tower = tower
        self._timeout = timeout
        self._user_agent = f"tower-proxy/{version()}"
        url = URL(tower.token_url)
        self._target = url.raw_path_qs
        egress = egress_for(tower.token_url, enabled=tower.use_env_proxy)
        if context is None and url.scheme == "https":
            context = ssl_context(tower)
        self._pool = UpstreamPool(
            Origin.from_url(tower.token_url),
            ssl=context,
            connect_timeout=timeout,
            read_timeout=timeout,
            tunnel=egress.tunnel(),
        )

    async def close(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> OAuthClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def exchange_code(self, code: str, *, captcha: str | None = None) -> dict[str, Any]:
        form = {
            "client_id": self._tower.client_id,
            "client_secret": self._tower.client_secret,
            "code": code,
            "grant_type": "authorization_code",
            "redirect_uri": self._tower.redirect_uri,
        }
        if captcha:
            form["captcha"] = captcha
        return await self._post(form, headers={})

    async def refresh(self, current: TokenSet) -> dict[str, Any]:
        form = {
            "client_id": self._tower.client_id,
            "client_secret": self._tower.client_secret,
            "grant_type": "refresh_token",
            "redirect_uri": self._tower.redirect_uri,
            "refresh_token": current.refresh_token,
        }
        return await self._post(form, headers={"Authorization": f"Bearer {current.access_token}"})

    async def _post(self, form: dict[str, str], *, headers: dict[str, str]) -> dict[str, Any]:
        fields = [
            ("Accept", "application/json"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("User-Agent", self._user_agent),
            *headers.items(),
        ]
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._pool.request(
                    "POST", self._target, fields, urlencode(form).encode(), fresh=True
                )
                body = await _read_answer(response)
        except TimeoutError:  # UpstreamTimeout is one
            raise TokenEndpointUnavailable("token endpoint timed out") from None
        except UpstreamError as exc:  # its message names the origin, never a header
            raise TokenEndpointUnavailable(
                f"token endpoint unreachable ({type(exc).__name__}: {exc})"
            ) from None
        return _interpret(response.status, body)


async def _read_answer(response: UpstreamResponse) -> bytes:
    try:
        body = await response.read_at_most(_MAX_ANSWER + 1)
    finally:
        response.release()  # closes the connection unless the answer was read to its end
    if len(body) > _MAX_ANSWER:
        raise OAuthError(
            "invalid_response",
            f"token endpoint answered over {_MAX_ANSWER} bytes",
            status=response.status,
        )
    return body


def _interpret(status: int, body: bytes) -> dict[str, Any]:
    if status >= 500 or status == 429:
        raise TokenEndpointUnavailable(f"token endpoint answered {status}")
    data = _json_object(body) or {}
    error = data.get("error")
    if isinstance(error, str) and error:
        raise _oauth_error(error, str(data.get("error_description") or ""), status)
    SECRETS.add(str(data.get("access_token") or ""), str(data.get("refresh_token") or ""))
    if status != 200 or not all(data.get(key) for key in _TOKEN_FIELDS):
        raise OAuthError(
            "invalid_response", f"token endpoint answered {status} without a token", status=status
        )
    return data


def _oauth_error(error: str, description: str, status: int) -> OAuthError:
    kind = {"invalid_grant": InvalidGrant, "otp_required": OtpRequired}.get(error, OAuthError)
    return kind(error, description, status=status)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
