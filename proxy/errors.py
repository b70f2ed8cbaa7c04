"""The proxy's exceptions: one root, a shallow tree.

    ProxyError
    ├── ConfigError              bad config: names the key; CLI exits 2
    ├── StoreError               the token store cannot be read or written
    │   └── StoreUnavailable     transient (Redis down, lock not obtained in time)
    ├── OAuthError               the token endpoint answered with an OAuth error
    │   ├── InvalidGrant         the refresh token is dead: a person must log in
    │   └── OtpRequired          two-factor account: repeat with the one-time code
    ├── TokenEndpointUnavailable transient: timeout, connection error, 5xx
    ├── NoToken                  no token set stored yet: run `tower-proxy login`
    ├── ReauthorizationRequired  refresh failed with invalid_grant for this generation
    ├── TokenUnavailable         refresh failed transiently; retry after `retry_after`
    └── Refused                  the proxy refuses a client request (code: SPEC section 6)

Only the request handler maps these to HTTP statuses, and only the CLI maps
them to exit codes.  Messages never contain secrets.
"""

from __future__ import annotations


class ProxyError(Exception):
    """Root of every error the proxy raises on purpose."""


class ConfigError(ProxyError):
    """The configuration is invalid; the message names the key."""


class StoreError(ProxyError):
    """The token store could not be read or written."""


class StoreUnavailable(StoreError):
    """The store is out of reach for now; try again later."""


class OAuthError(ProxyError):
    """The token endpoint answered `{"error": ..., "error_description": ...}`."""

    def __init__(self, error: str, description: str = "", *, status: int = 400) -> None:
        self.error = error
        self.description = description
        self.status = status
        text = f"{error}: {description}" if description else error
        super().__init__(text)


class InvalidGrant(OAuthError):
    """The grant (code or refresh token) is dead; only a new login helps."""


class OtpRequired(OAuthError):
    """Two-factor account: the same request must be repeated with `captcha`."""


class TokenEndpointUnavailable(ProxyError):
    """The token endpoint timed out, was unreachable or answered 5xx."""


class NoToken(ProxyError):
    """No token set is stored for this identity yet."""


class ReauthorizationRequired(ProxyError):
    """The stored refresh token was rejected; a person must run `tower-proxy login`."""


class TokenUnavailable(ProxyError):
    """No usable token right now after a transient refresh failure."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class Refused(ProxyError):
    """The proxy refuses a client's request; `code` is one of SPEC section 6's."""

    def __init__(self, code: str, description: str) -> None:
        self.code = code
        self.description = description
        super().__init__(f"{code}: {description}")
