"""Egress through a corporate proxy: `HTTPS_PROXY` / `NO_PROXY`.

Resolved once per destination when a client is built, not per request:
aiohttp's own `trust_env=True` re-reads the environment and `~/.netrc` in a
worker thread for every request, which costs a thread hop on the hot path
and lets a netrc entry put credentials on requests.

Invariant: the access token never reaches the egress proxy.  Only `https://`
destinations are sent through it, so the clients of upstream.py (the pool
towards `api_url` and the token endpoint's) always open a CONNECT tunnel and
speak TLS to Tower inside it; the proxy sees `CONNECT host:port` and
encrypted bytes.  A plain `http://` destination (allowed only on loopback,
the sandbox) never uses the proxy: that would put the bearer header in the
proxy's hands in absolute form.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from yarl import URL

from .errors import ConfigError
from .log import SECRETS
from .upstream import Origin

log = structlog.get_logger("proxy.egress")


@dataclass(frozen=True, slots=True)
class Egress:
    """How to reach one destination: directly (`proxy is None`) or tunnelled."""

    proxy: URL | None = None
    # Proxy-Authorization for the CONNECT request only; never sent to Tower.
    proxy_headers: Mapping[str, str] | None = None

    def describe(self) -> str:
        return "direct" if self.proxy is None else f"via {self.proxy}"

    def tunnel(self) -> tuple[Origin, dict[str, str]] | None:
        """What `UpstreamPool(tunnel=...)` takes: the proxy and the CONNECT request's headers."""
        if self.proxy is None:
            return None
        return Origin.from_url(str(self.proxy)), dict(self.proxy_headers or {})


DIRECT = Egress()


def egress_for(url: str, *, enabled: bool, env: Mapping[str, str] | None = None) -> Egress:
    """The egress for `url` from HTTPS_PROXY/NO_PROXY (lower case wins), or DIRECT."""
    target = URL(url)
    if not enabled or target.scheme != "https" or target.host is None:
        return DIRECT
    env = os.environ if env is None else env
    value = _first(env, "https_proxy", "HTTPS_PROXY")
    if not value:
        return DIRECT
    no_proxy = _first(env, "no_proxy", "NO_PROXY")
    if _bypassed(target.host, target.port, no_proxy):
        return DIRECT
    return _parse_proxy(value)


def _first(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        if env.get(name):
            return env[name].strip()
    return ""


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """NO_PROXY as curl reads it: `*`, host names (suffix match), IPs, CIDRs, `:port`."""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        if entry_port and str(port) != entry_port:
            continue
        name = name.strip("[]").lstrip(".")
        if host == name or host.endswith("." + name) or _in_network(host, name):
            return True
    return False


def _has_port(entry: str) -> bool:
    head, sep, tail = entry.rpartition(":")
    return bool(sep) and tail.isdigit() and (entry.count(":") == 1 or head.endswith("]"))


def _in_network(host: str, entry: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False


def _parse_proxy(value: str) -> Egress:
    proxy = URL(value if "://" in value else f"http://{value}")
    if proxy.scheme != "http" or proxy.host is None:
        # Both clients speak only plain HTTP to a proxy (CONNECT, then TLS inside).
        log.warning("egress_proxy_ignored", reason="only http:// proxies are supported")
        return DIRECT
    headers = None
    if proxy.user is not None:
        credentials = _basic_credentials(proxy.user, proxy.password or "")
        SECRETS.add(proxy.password or "", credentials.removeprefix("Basic "))
        headers = {"Proxy-Authorization": credentials}
    return Egress(proxy=proxy.with_user(None), proxy_headers=headers)


def _basic_credentials(user: str, password: str) -> str:
    """`Basic <base64(user:password)>`, UTF-8 (RFC 7617)."""
    if ":" in user:
        # Neither the user nor the password is echoed: the value holds both.
        raise ConfigError(
            'HTTPS_PROXY: the proxy user name holds a ":" (a %3A), which Basic '
            "credentials cannot carry (RFC 7617 section 2)"
        )
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
