"""The knobs tests turn while the sandbox runs.

`Knobs` starts from `SandboxSettings` and is changed through
`PATCH /_sandbox/knobs`. A patch is validated as a whole before any of it is
applied, so a bad patch leaves every knob as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .settings import SandboxSettings

_INT_KNOBS = ("token_ttl", "latency_ms", "token_delay_ms", "token_failures")
_FLOAT_KNOBS = ("error_rate", "token_fail_seconds")


class KnobError(ValueError):
    """A knob patch names an unknown knob or gives it a bad value."""


@dataclass(slots=True)
class Knobs:
    """Current values; `token_fail_until` is a clock time, shown as seconds left."""

    token_ttl: int
    latency_ms: int
    error_rate: float
    token_delay_ms: int
    token_failures: int = 0
    token_fail_until: float = 0.0

    @classmethod
    def from_settings(cls, settings: SandboxSettings, now: float) -> Knobs:
        return cls(
            token_ttl=settings.token_ttl,
            latency_ms=settings.latency_ms,
            error_rate=settings.error_rate,
            token_delay_ms=settings.token_delay_ms,
            token_failures=settings.token_failures,
            token_fail_until=now + settings.token_fail_seconds
            if settings.token_fail_seconds
            else 0.0,
        )

    def as_json(self, now: float) -> dict[str, object]:
        return {
            "token_ttl": self.token_ttl,
            "latency_ms": self.latency_ms,
            "error_rate": self.error_rate,
            "token_delay_ms": self.token_delay_ms,
            "token_failures": self.token_failures,
            "token_fail_seconds": max(0.0, self.token_fail_until - now),
        }

    def apply(self, patch: Mapping[str, object], now: float) -> None:
        values = {name: _checked(name, value) for name, value in patch.items()}
        for name, value in values.items():
            if name == "token_fail_seconds":
                self.token_fail_until = now + value
            else:
                setattr(self, name, value)

    def take_token_failure(self, now: float) -> bool:
        """Whether this token-endpoint call must fail; consumes one counted failure."""
        if now < self.token_fail_until:
            return True
        if self.token_failures > 0:
            self.token_failures -= 1
            return True
        return False


def _checked(name: str, value: object) -> float:
    if name in _INT_KNOBS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise KnobError(f"{name} must be an integer")
        low = 1 if name == "token_ttl" else 0
        if value < low:
            raise KnobError(f"{name} must be at least {low}")
        return value
    if name in _FLOAT_KNOBS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise KnobError(f"{name} must be a number")
        if value < 0 or (name == "error_rate" and value > 1):
            raise KnobError(f"{name} is out of range")
        return float(value)
    raise KnobError(f"unknown knob {name!r}")
