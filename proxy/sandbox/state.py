"""The `Sandbox` state object: one user's world, shared by every route.

It ties together the clock, the random source, the knobs, the counters and
request log, the issued credentials and the data store. Tests reach it as
`app[SANDBOX]` and may replace `clock` (a `Callable[[], float]` of unix
seconds) to move time instead of sleeping.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable

from aiohttp import web

from .grants import Credentials, GrantError, parse_scopes
from .knobs import Knobs
from .settings import SandboxSettings
from .stats import RequestLog, Stats
from .store import Store


class Sandbox:
    def __init__(
        self, settings: SandboxSettings, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.settings = settings
        self.clock: Callable[[], float] = clock or time.time
        # Moved by POST /_sandbox/clock, for tests that cannot swap `clock` in-process.
        self.clock_offset = 0.0
        seed = settings.random_seed
        self._id_random = random.Random(None if seed is None else f"ids:{seed}")
        self._error_random = random.Random(None if seed is None else f"errors:{seed}")
        self.knobs = Knobs.from_settings(settings, self.now())
        self.stats = Stats()
        self.requests = RequestLog()
        self.credentials = Credentials()
        self.store = Store(new_id=self.new_id, clock=self.now)
        self.file_host_url = settings.file_host_url
        # Signs upload policies and download URLs; it never leaves the sandbox.
        self.file_signing_key = secrets.token_hex(20)

    def now(self) -> float:
        return self.clock() + self.clock_offset

    def new_id(self) -> str:
        return f"{self._id_random.getrandbits(128):032x}"

    def roll_error(self) -> bool:
        rate = self.knobs.error_rate
        return rate > 0 and self._error_random.random() < rate

    def issue_code(self, scopes: str = "", redirect_uri: str | None = None) -> str:
        """A fresh authorization code, as if the user had pressed Approve."""
        uri = self.settings.redirect_uris[0] if redirect_uri is None else redirect_uri
        if uri not in self.settings.redirect_uris:
            raise ValueError(f"redirect_uri {uri!r} is not registered")
        try:
            granted = parse_scopes(scopes)
        except GrantError as error:
            raise ValueError(error.description) from None
        return self.credentials.issue_code(granted, uri, self.now())

    def secrets(self) -> list[str]:
        configured = [self.settings.client_secret]
        if self.settings.otp_code:
            configured.append(self.settings.otp_code)
        return configured + self.credentials.secrets()


SANDBOX = web.AppKey("sandbox", Sandbox)
