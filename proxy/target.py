"""From the client's raw request-target to the upstream URL, safely.

The invariant this module exists for: whatever bytes arrive, the URL it
returns has exactly the origin of `api_url` and a path under `api_url`'s
path.  Anything that could make a server along the way see another path
(dot segments in any encoding, encoded slashes or backslashes, control
characters) or another host (absolute-form and authority-form targets,
`//host` paths) is refused with `bad_request` — it is never "fixed".

The path and query go upstream byte-exact (no decoding, no re-encoding),
except that an `access_token` query parameter is removed.

Least privilege (optional): `allow_paths`/`deny_paths` are regular
expressions that must match the whole *decoded* path under the prefix (so
`%6Dembers` cannot dodge a rule about `members`), and `read_only` lets only
GET, HEAD and OPTIONS through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from yarl import URL

from .errors import Refused

MAX_TARGET = 8000
# Bytes allowed raw in a path or query: RFC 3986 pchar/query characters and '%'.
_SAFE = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%\[\]]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DECODE_ROUNDS = 4
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class PathPolicy:
    """Which methods and paths (under the prefix, decoded) may be forwarded."""

    allow: tuple[re.Pattern[str], ...] = ()
    deny: tuple[re.Pattern[str], ...] = ()
    read_only: bool = False

    @classmethod
    def build(
        cls, *, allow_paths: tuple[str, ...], deny_paths: tuple[str, ...], read_only: bool
    ) -> PathPolicy:
        return cls(
            allow=tuple(re.compile(p) for p in allow_paths),
            deny=tuple(re.compile(p) for p in deny_paths),
            read_only=read_only,
        )

    def check(self, method: str, tail: str) -> None:
        if self.read_only and method not in _READ_METHODS:
            raise Refused("method_not_allowed", f"{method} is refused: this proxy is read-only")
        if not (self.allow or self.deny):
            return
        path = "/".join(_fully_decoded(segment) for segment in tail.split("/")) or "/"
        if any(p.fullmatch(path) for p in self.deny) or (
            self.allow and not any(p.fullmatch(path) for p in self.allow)
        ):
            raise Refused("forbidden_path", "this path is not allowed through this proxy")


@dataclass(frozen=True, slots=True)
class Upstream:
    """The fixed upstream base, parsed once from `api_url`."""

    base: URL
    prefix: str
    policy: PathPolicy = field(default_factory=PathPolicy)

    @classmethod
    def from_config(
        cls, api_url: str, prefix: str, *, policy: PathPolicy | None = None
    ) -> Upstream:
        base = URL(api_url.rstrip("/"))
        return cls(base=base, prefix=prefix.rstrip("/") or "/", policy=policy or PathPolicy())

    @property
    def origin_text(self) -> str:
        return str(self.base)

    def url_for(self, raw_target: str, *, method: str = "GET") -> URL:
        """The upstream URL for a raw request-target, or Refused (see STATUS)."""
        path, query = _split_target(raw_target)
        tail = self._tail(path)
        _check_path(tail)
        self.policy.check(method, tail)
        query = _without_access_token(query)
        text = self.origin_text + tail + (f"?{query}" if query else "")
        url = URL(text, encoded=True)
        self._assert_inside(url)
        return url

    def _tail(self, path: str) -> str:
        prefix = self.prefix
        if path == prefix:
            return ""
        if prefix == "/" or path.startswith(prefix + "/"):
            return path[len(prefix) :] if prefix != "/" else path
        raise Refused("not_found", f"only paths under {prefix} are forwarded")

    def _assert_inside(self, url: URL) -> None:
        base = self.base
        same_origin = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
        base_path = base.raw_path.rstrip("/")
        inside = url.raw_path == base_path or url.raw_path.startswith(base_path + "/")
        if not (same_origin and inside) or url.user or url.fragment:
            raise Refused("bad_request", "request target leaves the upstream API")


def _split_target(raw: str) -> tuple[str, str]:
    if len(raw) > MAX_TARGET:
        raise Refused("bad_request", f"request target longer than {MAX_TARGET} bytes")
    if not raw.startswith("/") or raw.startswith("//"):
        raise Refused("bad_request", "only origin-form request targets (/path) are accepted")
    if not _SAFE.fullmatch(raw) or _BAD_ESCAPE.search(raw):
        raise Refused("bad_request", "request target contains characters that are not allowed")
    path, _, query = raw.partition("?")
    return path, query


def _check_path(tail: str) -> None:
    for segment in tail.split("/")[1:]:
        if segment == "":
            raise Refused("bad_request", "empty path segment")
        decoded = _fully_decoded(segment)
        if (
            decoded in {".", ".."}
            or any(ch in decoded for ch in "/\\?#")
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded)
        ):
            raise Refused(
                "bad_request",
                "path segment is a dot segment or hides a separator or control character",
            )


def _fully_decoded(segment: str) -> str:
    for _ in range(_DECODE_ROUNDS):
        try:
            decoded = unquote(segment, errors="strict")
        except UnicodeDecodeError:
            # Invalid UTF-8 (`%80`, overlong `%c0%ae` that some servers read as
            # "."): refused, so no server along the way can decode it differently.
            raise Refused("bad_request", "path segment is not UTF-8 once decoded") from None
        if decoded == segment:
            return decoded
        segment = decoded
    raise Refused("bad_request", "path segment is percent-encoded too many times")


def _without_access_token(query: str) -> str:
    if not query or "access_token" not in unquote(query):
        return query
    kept = [
        part
        for part in query.split("&")
        if unquote(part.partition("=")[0].replace("+", " ")).strip() != "access_token"
    ]
    return "&".join(kept)
