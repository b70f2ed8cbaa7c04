"""What the sandbox saw: counters and the log of recent /api/v1 requests.

Tests assert exact counts here (one refresh, no token sent to the file host).
Secrets never enter the log: an Authorization header is kept only as its
scheme and a fingerprint, the first 8 hex digits of the credential's sha256.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields

TOKEN_GRANTS = ("authorization_code", "refresh_token")
TOKEN_OUTCOMES = ("ok", "invalid_grant", "otp_required", "unavailable", "other_error")
REQUEST_LOG_SIZE = 1000


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def mask_authorization(value: str) -> str:
    scheme, _, credential = value.partition(" ")
    return f"{scheme} {fingerprint(credential.strip())}"


def mask_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as one JSON object; repeated names are joined as HTTP allows."""
    masked: dict[str, str] = {}
    for name, value in headers:
        shown = mask_authorization(value) if name.lower() == "authorization" else value
        masked[name] = f"{masked[name]}, {shown}" if name in masked else shown
    return masked


def _zeroes(names: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(names, 0)


@dataclass(slots=True)
class Stats:
    token_requests: dict[str, int] = field(default_factory=lambda: _zeroes(TOKEN_GRANTS))
    token_responses: dict[str, int] = field(default_factory=lambda: _zeroes(TOKEN_OUTCOMES))
    refresh_bearer_header: int = 0
    api_requests: int = 0
    api_unauthorized: int = 0
    file_host_authorization_headers: int = 0

    def as_json(self) -> dict[str, object]:
        return asdict(self)

    def reset(self) -> None:
        fresh = Stats()
        for item in fields(self):
            setattr(self, item.name, getattr(fresh, item.name))


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    method: str
    raw_path: str
    headers: dict[str, str]
    token_fingerprint: str | None
    body_sha256: str
    body_size: int
    status: int

    def as_json(self) -> dict[str, object]:
        return asdict(self)


class RequestLog:
    """The last `REQUEST_LOG_SIZE` requests, oldest first."""

    def __init__(self, capacity: int = REQUEST_LOG_SIZE) -> None:
        self._entries: deque[LoggedRequest] = deque(maxlen=capacity)

    def add(self, entry: LoggedRequest) -> None:
        self._entries.append(entry)

    def last(self, limit: int) -> list[LoggedRequest]:
        if limit <= 0:
            return []
        return list(self._entries)[-limit:]
