"""The sandbox's start-up settings.

Everything here is fixed for the life of one sandbox; what tests change while
it runs (token lifetime, latency, injected failures) lives in `knobs.py` and
starts from these values.
"""

from __future__ import annotations

from dataclasses import dataclass

OOB_REDIRECT_URI = "urn:ietf:wg:oauth:2.0:oob"


@dataclass(frozen=True, slots=True, kw_only=True)
class SandboxSettings:
    """How one sandbox is set up: the registered app, the user, the data, the knobs."""

    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    app_name: str = "Sandbox App"
    redirect_uris: tuple[str, ...] = (OOB_REDIRECT_URI, "https://localhost/callback")
    token_ttl: int = 7199
    # When set, the user has two-factor login: the code grant first answers
    # otp_required and succeeds when repeated with captcha=<otp_code>.
    otp_code: str | None = None
    seed_file: str | None = None
    test_routes: bool = False
    latency_ms: int = 0
    error_rate: float = 0.0
    token_delay_ms: int = 0
    # The token endpoint fails (503 temporarily_unavailable) for the next N
    # calls, or for this many seconds after start, as the run-time knobs do.
    token_failures: int = 0
    token_fail_seconds: float = 0.0
    file_host_url: str | None = None
    random_seed: int | None = None

    def __post_init__(self) -> None:
        if self.token_ttl <= 0:
            raise ValueError("token_ttl must be a positive number of seconds")
        if min(self.latency_ms, self.token_delay_ms, self.token_failures) < 0:
            raise ValueError("latency_ms, token_delay_ms and token_failures must not be negative")
        if self.token_fail_seconds < 0:
            raise ValueError("token_fail_seconds must not be negative")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        if not self.redirect_uris:
            raise ValueError("redirect_uris must name at least one URI")
