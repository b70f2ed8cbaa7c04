"""Who may call the proxy (SPEC section 6), and what a browser may read back.

- `Host` must name this proxy: localhost, 127.0.0.1, [::1] or an
  `allowed_hosts` entry, any port, exactly one `Host` header — a
  DNS-rebinding page cannot use it;
- a browser request (an `Origin`, or `Sec-Fetch-Site` cross-site/same-site)
  must come from an `allowed_origins` entry; a CORS preflight is answered
  here, never forwarded, and only for those origins, naming them exactly
  (never `*`);
- when inbound keys are configured, `X-Proxy-Key` must equal one of them,
  compared in constant time against every key;
- on a unix socket with `allowed_uids`, the peer's uid (SO_PEERCRED, which
  the kernel fills in and the caller cannot forge) must be listed;
- no header field may be longer than `max_header_size`.
curl and Postman send neither Origin nor Sec-Fetch-Site, so they just work.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from multidict import CIMultiDict, CIMultiDictProxy

from .config import ServerConfig
from .errors import ConfigError, Refused
from .messages import Request, Response

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_BROWSER_SITES = {"cross-site", "same-site"}
# A host name or bracketed IPv6 literal, then an optional numeric port.
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[^:\[\]@/\\\s]+)(?::\d{1,5})?")
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
READ_METHODS = ("GET", "HEAD", "OPTIONS")
# Request headers a browser page may send; Authorization is not among them:
# the proxy removes it anyway, the token is the proxy's.
CORS_REQUEST_HEADERS = (
    "Accept",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "If-Modified-Since",
    "X-Proxy-Key",
    "X-Request-ID",
)
CORS_EXPOSED_HEADERS = ("X-Request-ID", "X-Tower-Proxy-Error", "Retry-After", "Location")
_PREFLIGHT_MAX_AGE = "600"


@dataclass(frozen=True, slots=True)
class Guard:
    hosts: frozenset[str]
    origins: frozenset[str]
    keys: tuple[bytes, ...] = ()
    uids: frozenset[int] = frozenset()
    max_header_size: int = 16 * 1024
    methods: tuple[str, ...] = ALL_METHODS

    @classmethod
    def build(
        cls,
        *,
        allowed_hosts: tuple[str, ...],
        allowed_origins: tuple[str, ...],
        inbound_keys_file: str = "",
        allowed_uids: tuple[int, ...] = (),
        max_header_size: int = 16 * 1024,
        read_only: bool = False,
    ) -> Guard:
        hosts = frozenset(h.lower() for h in (*_LOOPBACK_NAMES, *allowed_hosts))
        origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        keys = load_keys(inbound_keys_file) if inbound_keys_file else ()
        return cls(
            hosts=hosts,
            origins=origins,
            keys=keys,
            uids=frozenset(allowed_uids),
            max_header_size=max_header_size,
            methods=READ_METHODS if read_only else ALL_METHODS,
        )

    @classmethod
    def from_config(cls, server: ServerConfig) -> Guard:
        return cls.build(
            allowed_hosts=server.allowed_hosts,
            allowed_origins=server.allowed_origins,
            inbound_keys_file=server.inbound_keys_file,
            allowed_uids=server.allowed_uids,
            max_header_size=server.max_header_size,
            read_only=server.read_only,
        )

    def check(self, headers: CIMultiDictProxy[str], *, largest_field: int | None = None) -> None:
        """Raise Refused unless these request headers may use the proxy.

        `largest_field`: the longest name + value, when the parser measured it already.
        """
        self._check_browsing(headers, largest_field)
        if self.keys:
            self._check_key(headers.get("X-Proxy-Key", ""))

    def _check_browsing(self, headers: CIMultiDictProxy[str], largest_field: int | None) -> None:
        """Host, field sizes and origin: what a preflight (which carries no key) must pass."""
        self._check_host(headers)
        if largest_field is None:
            largest_field = max((len(n) + len(v) for n, v in headers.items()), default=0)
        if largest_field > self.max_header_size:
            limit = self.max_header_size
            raise Refused("bad_request", f"a header field is longer than {limit} bytes")
        self.check_origin(headers)

    def check_request(self, request: Request) -> None:
        """`check`, plus the peer's uid when `allowed_uids` is set."""
        if self.uids:
            self._check_peer(request.transport)
        self.check(request.headers, largest_field=request.largest_field)

    def origin_allowed(self, origin: str) -> bool:
        return origin.rstrip("/").lower() in self.origins

    def check_origin(self, headers: CIMultiDictProxy[str]) -> None:
        origin = headers.get("Origin")
        site = headers.get("Sec-Fetch-Site", "").lower()
        if origin is not None and not self.origin_allowed(origin):
            raise Refused("forbidden_origin", "requests from this browser origin are refused")
        if origin is None and site in _BROWSER_SITES:
            raise Refused("forbidden_origin", "cross-site browser requests are refused")

    def preflight(self, request: Request) -> Response:
        """Answer a CORS preflight here; Refused unless its origin is allowed."""
        if self.uids:
            self._check_peer(request.transport)
        headers = request.headers
        self._check_browsing(headers, request.largest_field)  # a preflight carries Origin
        answer = {
            **self.cors_headers(headers["Origin"]),
            "Access-Control-Allow-Methods": ", ".join(self.methods),
            "Access-Control-Allow-Headers": ", ".join(CORS_REQUEST_HEADERS),
            "Access-Control-Max-Age": _PREFLIGHT_MAX_AGE,
            # app.py adds "Vary: Origin" to every answer to a browser
            "Vary": "Access-Control-Request-Method, Access-Control-Request-Headers",
        }
        return Response(status=204, headers=CIMultiDict(answer))

    def cors_headers(self, origin: str) -> dict[str, str]:
        """What an allowed origin's responses carry; nothing for any other."""
        if not self.origin_allowed(origin):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": ", ".join(CORS_EXPOSED_HEADERS),
        }

    def _check_host(self, headers: CIMultiDictProxy[str]) -> None:
        values = headers.getall("Host", [])
        # Two Host headers could be read differently by two parsers: refuse them.
        if len(values) != 1 or _host_name(values[0]) not in self.hosts:
            raise Refused("forbidden_host", "the Host header does not name this proxy")

    def _check_key(self, presented: str) -> None:
        given = presented.encode()
        # Compare against every key, always, so timing does not tell which matched.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise Refused("unauthorized_caller", "a valid X-Proxy-Key header is required")

    def _check_peer(self, transport: asyncio.BaseTransport | None) -> None:
        if peer_uid(transport) not in self.uids:
            raise Refused("unauthorized_caller", "this user may not use the proxy's socket")


def is_preflight(request: Request) -> bool:
    headers = request.headers
    return (
        request.method == "OPTIONS"
        and "Origin" in headers
        and "Access-Control-Request-Method" in headers
    )


def peer_uid(transport: asyncio.BaseTransport | None) -> int | None:
    """The uid of the process at the other end of a unix socket, else None."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    _pid, uid, _gid = _UCRED.unpack(creds)
    return int(uid)


@functools.lru_cache(maxsize=256)  # a handful of Host values recur on every request
@functools.lru_cache(maxsize=64)  # clients name the proxy the same way on every request
def _host_name(host: str) -> str:
    match = _HOST.fullmatch(host.strip().lower())
    return match.group(1) if match else ""


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
