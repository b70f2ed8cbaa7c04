"""The Tower API simulator ("sandbox"): Doorkeeper OAuth + the JSON:API, in memory.

`create_app(settings)` is the API host; `create_file_host_app(sandbox)` the
separate file host; `start_sandbox` (and `python -m proxy.sandbox`) runs both
on real sockets. `app[SANDBOX]` is the `Sandbox` state for tests to inspect
and drive.
"""

from __future__ import annotations

from .app import create_app
from .files import create_file_host_app
from .run import RunningSandbox, start_sandbox
from .settings import SandboxSettings
from .state import SANDBOX, Sandbox

__all__ = [
    "SANDBOX",
    "RunningSandbox",
    "Sandbox",
    "SandboxSettings",
    "create_app",
    "create_file_host_app",
    "start_sandbox",
]
