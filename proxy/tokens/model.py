"""The token set: what one identity holds, and how it is written down.

A token set is immutable.  Its `generation` only grows: every login or refresh
stores generation + 1, and stores refuse to replace a set with one whose
generation is not newer (compare-and-set).  `fingerprint` is the only form in
which a token may appear in logs, metrics or command output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import StoreError
from ..log import SECRETS


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for a token."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_at: float  # unix seconds: created_at + expires_in
    email: str = ""
    generation: int = 1
    obtained_at: float = 0.0  # unix seconds when this generation was stored
    obtained_by: str = "login"  # "login" or "refresh"
    scope: str = ""

    def __post_init__(self) -> None:
        # Known to the log redactor from the moment the process holds it.
        SECRETS.add(self.access_token, self.refresh_token)

    def __repr__(self) -> str:
        return (
            f"TokenSet(generation={self.generation}, email={self.email!r}, "
            f"access={self.fingerprint}, expires_at={self.expires_at:.0f})"
        )

    __str__ = __repr__

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.access_token)

    def expires_in(self, now: float) -> float:
        return self.expires_at - now

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> TokenSet:
        try:
            data: Any = json.loads(text)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"stored token set is unreadable ({type(exc).__name__})") from None

    @classmethod
    def from_grant(
        cls, response: dict[str, Any], *, generation: int, now: float, obtained_by: str
    ) -> TokenSet:
        """Build from a token-endpoint response (already checked by oauth)."""
        created_at = float(response.get("created_at") or now)
        return cls(
            access_token=str(response["access_token"]),
            refresh_token=str(response.get("refresh_token") or ""),
            expires_at=created_at + float(response.get("expires_in") or 7200),
            email=str(response.get("email") or ""),
            generation=generation,
            obtained_at=now,
            obtained_by=obtained_by,
            scope=str(response.get("scope") or ""),
        )

    def describe(self, now: float) -> dict[str, object]:
        """The redacted state, for `status`, `/-/token` and logs."""
        return {
            "email": self.email,
            "generation": self.generation,
            "fingerprint": self.fingerprint,
            "expires_at": round(self.expires_at),
            "expires_in": round(self.expires_in(now)),
            "obtained_at": round(self.obtained_at),
            "obtained_by": self.obtained_by,
            "scope": self.scope,
        }
