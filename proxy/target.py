"""From the client's raw request-target to the upstream target, safely.

The invariant this module exists for: whatever bytes arrive, the target it
returns is origin-form (`/path?query`) with a path under `api_url`'s path,
and the URL `url_for` makes of it has exactly the origin of `api_url`.
Anything that could make a server along the way see another path (dot
segments in any encoding, encoded slashes or backslashes, control
characters) or another host (absolute-form and authority-form targets,
`//host` paths) is refused with `bad_request` — it is never "fixed".

The path and query go upstream byte-exact (no decoding, no re-encoding),
except that an `access_token` query parameter is removed.

Least privilege (optional): `allow_paths`/`deny_paths` are regular
expressions that must match the whole *decoded* path under the prefix (so
`%6Dembers` cannot dodge a rule about `members`), and `read_only` lets only
GET, HEAD and OPTIONS through.

What a raw target validates to depends on nothing but the raw target (and
the fixed `Upstream`), so each `Upstream` keeps the last `_CACHE_SIZE`
outcomes, refusals included, keyed on the exact raw string; the method is
checked on every call.  A refusal is raised anew each time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
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
# Outcomes kept per Upstream, and the longest raw target kept (a longer one,
# rare, is validated every time: the cache stays under a few MiB).
_CACHE_SIZE = 1024
_CACHED_LENGTH = 1024


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

    def check_method(self, method: str) -> None:
        if self.read_only and method not in _READ_METHODS:
            raise Refused("method_not_allowed", f"{method} is refused: this proxy is read-only")

    def check_path(self, tail: str) -> None:
        if not (self.allow or self.deny):
            return
        path = "/".join(map(_fully_decoded, tail.split("/"))) if "%" in tail else tail
        path = path or "/"
        if any(p.fullmatch(path) for p in self.deny) or (
            self.allow and not any(p.fullmatch(path) for p in self.allow)
        ):
            raise Refused("forbidden_path", "this path is not allowed through this proxy")


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What one raw target validates to, for any method (checked in between)."""

    invalid: tuple[str, str] | None = None  # (code, description): refused for every method
    forbidden: tuple[str, str] | None = None  # refused by the path policy, if the method passes
    target: str = ""


@dataclass(frozen=True, slots=True)
class Upstream:
    """The fixed upstream base, parsed once from `api_url`."""

    base: URL
    prefix: str
    policy: PathPolicy = field(default_factory=PathPolicy)
    _base_path: str = field(init=False, repr=False, compare=False)
    _origin: str = field(init=False, repr=False, compare=False)
    _verdicts: Callable[[str], _Verdict] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: these are derived once, here.  The cache holds a bound method
        # of this Upstream (a cycle the GC collects with it).
        object.__setattr__(self, "_base_path", self.base.raw_path.rstrip("/"))
        object.__setattr__(self, "_origin", str(self.base.origin()))
        object.__setattr__(self, "_verdicts", functools.lru_cache(_CACHE_SIZE)(self._verdict))

    @classmethod
    def from_config(
        cls, api_url: str, prefix: str, *, policy: PathPolicy | None = None
    ) -> Upstream:
        base = URL(api_url.rstrip("/"))
        return cls(base=base, prefix=prefix.rstrip("/") or "/", policy=policy or PathPolicy())

    def target_for(self, raw_target: str, *, method: str = "GET") -> str:
        """The origin-form target to send upstream for a raw request-target, or Refused."""
        verdict = (
            self._verdicts(raw_target)
            if len(raw_target) <= _CACHED_LENGTH
            else self._verdict(raw_target)
        )
        if verdict.invalid is not None:
            raise Refused(*verdict.invalid)
        self.policy.check_method(method)
        if verdict.forbidden is not None:
            raise Refused(*verdict.forbidden)
        return verdict.target

    def url_for(self, raw_target: str, *, method: str = "GET") -> URL:
        """The upstream URL for a raw request-target, or Refused (see STATUS)."""
        url = URL(self._origin + self.target_for(raw_target, method=method), encoded=True)
        self._assert_inside_url(url)
        return url

    def _verdict(self, raw_target: str) -> _Verdict:
        try:
            path, query = _split_target(raw_target)
            tail = self._tail(path)
            _check_path(tail)
            target = self._target(tail, _without_access_token(query))
        except Refused as refused:
            return _Verdict(invalid=(refused.code, refused.description))
        try:
            self.policy.check_path(tail)
        except Refused as refused:
            return _Verdict(forbidden=(refused.code, refused.description), target=target)
        return _Verdict(target=target)

    def _tail(self, path: str) -> str:
        prefix = self.prefix
        if path == prefix:
            return ""
        if prefix == "/" or path.startswith(prefix + "/"):
            return path[len(prefix) :] if prefix != "/" else path
        raise Refused("not_found", f"only paths under {prefix} are forwarded")

    def _target(self, tail: str, query: str) -> str:
        path = self._base_path + tail or "/"
        # Built from checked parts, so this only guards against a mistake here:
        # the path must be the base path or below it, and not `//authority`.
        base = self._base_path
        if not (path == base or path.startswith(base + "/")) or path.startswith("//"):
            raise Refused("bad_request", "request target leaves the upstream API")
        return f"{path}?{query}" if query else path

    def _assert_inside_url(self, url: URL) -> None:
        base = self.base
        same_origin = (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
        inside = url.raw_path == self._base_path or url.raw_path.startswith(self._base_path + "/")
        if not (same_origin and inside) or url.user or url.fragment:
            raise Refused("bad_request", "request target leaves the upstream API")


def _split_target(raw: str) -> tuple[str, str]:
    if len(raw) > MAX_TARGET:
        raise Refused("bad_request", f"request target longer than {MAX_TARGET} bytes")
    if not raw.startswith("/") or raw.startswith("//"):
        raise Refused("bad_request", "only origin-form request targets (/path) are accepted")
    if not _SAFE.fullmatch(raw) or ("%" in raw and _BAD_ESCAPE.search(raw)):
        raise Refused("bad_request", "request target contains characters that are not allowed")
    path, _, query = raw.partition("?")
    return path, query


def _check_path(tail: str) -> None:
    for segment in tail.split("/")[1:]:
        if segment == "":
            raise Refused("bad_request", "empty path segment")
        if "%" in segment:
            segment = _fully_decoded(segment)
            hides = any(ch in segment for ch in "/\\?#") or any(
                ord(ch) < 0x20 or ord(ch) == 0x7F for ch in segment
            )
        else:  # its own decoding, of _SAFE characters: no separator, no control character
            hides = False
        if hides or segment in {".", ".."}:
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
