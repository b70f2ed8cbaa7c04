"""Who may call the proxy (SPEC section 6).

- `Host` must name this proxy: localhost, 127.0.0.1, [::1] or an
  `allowed_hosts` entry, any port — a DNS-rebinding page cannot use it;
- a browser request (an `Origin`, or `Sec-Fetch-Site` cross-site/same-site)
  must come from an `allowed_origins` entry;
- when inbound keys are configured, `X-Proxy-Key` must equal one of them,
  compared in constant time.
curl and Postman send neither Origin nor Sec-Fetch-Site, so they just work.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from multidict import CIMultiDictProxy

from .errors import ConfigError, Refused

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
_BROWSER_SITES = {"cross-site", "same-site"}


@dataclass(frozen=True, slots=True)
class Guard:
    hosts: frozenset[str]
    origins: frozenset[str]
    keys: tuple[bytes, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        allowed_hosts: tuple[str, ...],
        allowed_origins: tuple[str, ...],
        inbound_keys_file: str = "",
    ) -> Guard:
        hosts = frozenset(h.lower() for h in (*_LOOPBACK_NAMES, *allowed_hosts))
        origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        keys = load_keys(inbound_keys_file) if inbound_keys_file else ()
        return cls(hosts=hosts, origins=origins, keys=keys)

    def check(self, headers: CIMultiDictProxy[str]) -> None:
        """Raise Refused unless these request headers may use the proxy."""
        self._check_host(headers.get("Host", ""))
        self.check_origin(headers)
        if self.keys:
            self._check_key(headers.get("X-Proxy-Key", ""))

    def origin_allowed(self, origin: str) -> bool:
        return origin.rstrip("/").lower() in self.origins

    def check_origin(self, headers: CIMultiDictProxy[str]) -> None:
        origin = headers.get("Origin")
        site = headers.get("Sec-Fetch-Site", "").lower()
        if origin is not None and not self.origin_allowed(origin):
            raise Refused("forbidden_origin", "requests from this browser origin are refused")
        if origin is None and site in _BROWSER_SITES:
            raise Refused("forbidden_origin", "cross-site browser requests are refused")

    def _check_host(self, host: str) -> None:
        if _host_name(host) not in self.hosts:
            raise Refused("forbidden_host", "the Host header does not name this proxy")

    def _check_key(self, presented: str) -> None:
        given = presented.encode()
        # Compare against every key, always, so timing does not tell which matched.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise Refused("unauthorized_caller", "a valid X-Proxy-Key header is required")


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def load_keys(path: str) -> tuple[bytes, ...]:
    """One key per line; blank lines and `#` comments ignored."""
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"server.inbound_keys_file: cannot read {path}: {exc.strerror}") from None
    keys = tuple(
        line.strip().encode() for line in lines if line.strip() and not line.strip().startswith("#")
    )
    if not keys:
        raise ConfigError(f"server.inbound_keys_file: {path} holds no key")
    if any(len(key) < 16 for key in keys):
        raise ConfigError("server.inbound_keys_file: every key must be at least 16 characters")
    return keys
