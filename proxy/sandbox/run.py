"""Running the sandbox on real sockets: both hosts, one shared state.

`start_sandbox` binds the file host first so the API knows its address, then
the API; `RunningSandbox.close()` stops both. The proxy's `sandbox` command
uses this in-process; `__main__` wraps it for the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .app import create_app
from .files import create_file_host_app
from .settings import SandboxSettings
from .state import SANDBOX, Sandbox


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    api_base: str  # e.g. "http://127.0.0.1:PORT"; the API is under /api/v1
    file_base: str
    sandbox: Sandbox
    _runners: tuple[web.AppRunner, ...]

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


async def start_sandbox(
    settings: SandboxSettings, host: str = "127.0.0.1", port: int = 0, file_port: int = 0
) -> RunningSandbox:
    api_app = create_app(settings)
    sandbox = api_app[SANDBOX]
    files_runner = await _serve(create_file_host_app(sandbox), host, file_port)
    try:
        file_base = settings.file_host_url or _base(host, files_runner)
        sandbox.file_host_url = file_base
        api_runner = await _serve(api_app, host, port)
    except BaseException:
        await files_runner.cleanup()
        raise
    return RunningSandbox(_base(host, api_runner), file_base, sandbox, (api_runner, files_runner))


async def _serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        # aiohttp's default backlog of 128 drops the SYNs of a burst of new
        # connections into a one-second retry; Tower's own front end does not.
        await web.TCPSite(runner, host, port, backlog=1024).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def _base(host: str, runner: web.AppRunner) -> str:
    bound_port = runner.addresses[0][1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{bound_port}"
