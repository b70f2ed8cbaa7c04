"""Authorization codes and token pairs, kept the way Doorkeeper keeps them.

Rules (SPEC section 1, Doorkeeper defaults):
- a code is single-use, lives `CODE_TTL` seconds and is bound to its redirect URI;
- issuing any new token revokes every earlier access token of the user;
- a refresh token is single-use: using it retires it, and reusing, forging or
  using a revoked one is `invalid_grant`;
- revoking access tokens leaves their refresh tokens usable unless asked.
Time is passed in by the caller so tests drive it with a fake clock.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

CODE_TTL = 600
KNOWN_SCOPES = ("read", "write")

INVALID_GRANT = (
    "The provided authorization grant is invalid, expired, revoked, does not match the "
    "redirection URI used in the authorization request, or was issued to another client."
)
INVALID_SCOPE = "The requested scope is invalid, unknown, or malformed."


class GrantError(Exception):
    """An OAuth error answer: `error`, `error_description` and the HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status


def invalid_grant() -> GrantError:
    return GrantError("invalid_grant", INVALID_GRANT)


class TokenProblem(enum.Enum):
    """Why an access token is refused; the value is Doorkeeper's description."""

    INVALID = "The access token is invalid"
    EXPIRED = "The access token expired"
    REVOKED = "The access token was revoked"


@dataclass(slots=True)
class AuthCode:
    code: str
    redirect_uri: str
    scopes: tuple[str, ...]
    expires_at: float
    used: bool = False


@dataclass(slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    scopes: tuple[str, ...]
    # Whole seconds, as the token response shows it, so a client that computes
    # created_at + expires_in agrees exactly with the sandbox about expiry.
    created_at: int
    expires_in: int
    access_revoked: bool = False
    refresh_revoked: bool = False

    def problem(self, now: float) -> TokenProblem | None:
        if self.access_revoked:
            return TokenProblem.REVOKED
        if now >= self.created_at + self.expires_in:
            return TokenProblem.EXPIRED
        return None

    def allows_writes(self) -> bool:
        # Scopes may be left empty when the app is created; that means full access.
        return not self.scopes or "write" in self.scopes


def parse_scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(text.split()))
    if any(scope not in KNOWN_SCOPES for scope in scopes):
        raise GrantError("invalid_scope", INVALID_SCOPE)
    return scopes


def _new_secret() -> str:
    return secrets.token_hex(32)


class Credentials:
    """Every code and token pair issued to the sandbox's one user."""

    def __init__(self) -> None:
        self._codes: dict[str, AuthCode] = {}
        self._by_access: dict[str, TokenPair] = {}
        self._by_refresh: dict[str, TokenPair] = {}

    def issue_code(self, scopes: tuple[str, ...], redirect_uri: str, now: float) -> str:
        code = _new_secret()
        self._codes[code] = AuthCode(code, redirect_uri, scopes, now + CODE_TTL)
        return code

    def usable_code(self, code: str, redirect_uri: str, now: float) -> AuthCode:
        """The code's record if it may be redeemed now with this redirect URI."""
        record = self._codes.get(code)
        if record is None or record.used or now >= record.expires_at:
            raise invalid_grant()
        if record.redirect_uri != redirect_uri:
            raise invalid_grant()
        return record

    def redeem_code(self, code: str, redirect_uri: str, now: float, ttl: int) -> TokenPair:
        record = self.usable_code(code, redirect_uri, now)
        record.used = True
        return self._issue(record.scopes, now, ttl)

    def refresh(self, refresh_token: str, now: float, ttl: int) -> TokenPair:
        old = self._by_refresh.get(refresh_token)
        if old is None or old.refresh_revoked:
            raise invalid_grant()
        old.refresh_revoked = True
        return self._issue(old.scopes, now, ttl)

    def find(self, access_token: str) -> TokenPair | None:
        return self._by_access.get(access_token)

    def check(self, access_token: str | None, now: float) -> TokenPair | TokenProblem:
        pair = self._by_access.get(access_token) if access_token else None
        if pair is None:
            return TokenProblem.INVALID
        return pair.problem(now) or pair

    def revoke(self, *, refresh_tokens: bool) -> int:
        """Revoke every live access token (and refresh token if asked); returns how many."""
        count = 0
        for pair in self._by_access.values():
            count += not pair.access_revoked
            pair.access_revoked = True
            if refresh_tokens:
                pair.refresh_revoked = True
        return count

    def secrets(self) -> list[str]:
        issued = list(self._codes)
        for pair in self._by_access.values():
            issued += [pair.access_token, pair.refresh_token]
        return issued

    def _issue(self, scopes: tuple[str, ...], now: float, ttl: int) -> TokenPair:
        for earlier in self._by_access.values():
            earlier.access_revoked = True
        pair = TokenPair(_new_secret(), _new_secret(), scopes, int(now), ttl)
        self._by_access[pair.access_token] = pair
        self._by_refresh[pair.refresh_token] = pair
        return pair
