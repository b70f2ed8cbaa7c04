"""Tower's token endpoint: the authorization-code and refresh grants.

Follows SPEC section 1: form-encoded POSTs to `<oauth_url>/token`; the refresh
grant also sends `Authorization: Bearer <current access token>` as Tower's
guide documents; `otp_required` may come with 200 or 401.  Errors are
classified here once: `invalid_grant` is fatal (InvalidGrant), timeouts,
connection errors and 5xx are transient (TokenEndpointUnavailable), any
other OAuth error is OAuthError.  No secret is ever put in an exception.
"""

from __future__ import annotations

import json
import secrets
import ssl
from typing import Any

import aiohttp
from yarl import URL

from .config import TowerConfig
from .egress import egress_for
from .errors import InvalidGrant, OAuthError, OtpRequired, TokenEndpointUnavailable
from .log import SECRETS
from .tokens.model import TokenSet

_TOKEN_FIELDS = ("access_token", "expires_in")


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
    def __init__(
        self, tower: TowerConfig, session: aiohttp.ClientSession, *, timeout: float = 30.0
    ) -> None:
        self._tower = tower
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._egress = egress_for(tower.token_url, enabled=tower.use_env_proxy)

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
        headers = {**headers, "Accept": "application/json"}
        try:
            async with self._session.post(
                self._tower.token_url,
                data=form,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                proxy=self._egress.proxy,
                proxy_headers=self._egress.proxy_headers,
            ) as response:
                body = await response.read()
                status = response.status
        except TimeoutError:
            raise TokenEndpointUnavailable("token endpoint timed out") from None
        except aiohttp.ClientError as exc:
            raise TokenEndpointUnavailable(
                f"token endpoint unreachable ({type(exc).__name__}: {exc})"
            ) from None
        return _interpret(status, body)


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
