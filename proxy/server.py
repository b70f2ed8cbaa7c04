"""Running the app on its listener until a signal, then draining.

SIGTERM/SIGINT (or `POST /-/quit`): readiness turns 503 at once, requests are
still served for `shutdown_delay` (time for load balancers to notice), then
the listener closes and in-flight requests (streams included) finish up to
`drain_timeout`, exit 0.  A second
signal exits at once.  An optional admin app (probes, metrics) runs on its
own listener and is stopped last, so readiness reads 503 until the data
listener has drained.  A unix socket is created with `unix_socket_mode`
(0600 by default) and never has a looser one; a stale socket file
left by a dead process is replaced, a live one is an error.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from .admin import Lifecycle
from .config import TcpAddress, UnixAddress
from .errors import ConfigError
from .limits import LimitedRunner

log = structlog.get_logger("proxy.server")

OnReady = Callable[[list[str]], Awaitable[None] | None]


async def serve(
    app: web.Application,
    address: TcpAddress | UnixAddress,
    *,
    lifecycle: Lifecycle,
    drain_timeout: float,
    shutdown_delay: float = 0.0,
    on_ready: OnReady | None = None,
    admin: tuple[web.Application, TcpAddress | UnixAddress] | None = None,
    reuse_port: bool = False,
    max_connections: int = 0,
    socket_mode: int = 0o600,
) -> None:
    """Serve until SIGTERM/SIGINT or a quit request, then drain and return."""
    runner = LimitedRunner(
        app,
        max_connections=max_connections,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=drain_timeout,
    )
    await runner.setup()
    admin_runner: web.AppRunner | None = None
    try:
        if admin is not None:
            admin_runner = await _start_admin(*admin)
        await _start_site(runner, address, reuse_port=reuse_port, socket_mode=socket_mode)
        addresses = _describe(runner.addresses)
        log.info("listening", addresses=addresses)
        if on_ready is not None:
            result = on_ready(addresses)
            if result is not None:
                await result
        await _wait_for_stop(lifecycle)
        log.info("draining", delay=shutdown_delay, timeout=drain_timeout)
        # Still serving for a moment so load balancers see readiness fail first.
        await asyncio.sleep(shutdown_delay)
        lifecycle.refusing = True
    finally:
        await runner.cleanup()
        if admin_runner is not None:
            await admin_runner.cleanup()
        log.info("stopped")


async def _start_admin(
    admin_app: web.Application, address: TcpAddress | UnixAddress
) -> web.AppRunner:
    runner = web.AppRunner(admin_app, access_log=None, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    try:
        await _start_site(runner, address, key="server.admin_listen")
    except BaseException:
        await runner.cleanup()
        raise
    log.info("admin_listening", addresses=_describe(runner.addresses))
    return runner


async def _start_site(
    runner: web.AppRunner,
    address: TcpAddress | UnixAddress,
    *,
    key: str = "server.listen",
    reuse_port: bool = False,
    socket_mode: int = 0o600,
) -> None:
    if isinstance(address, UnixAddress):
        _clear_stale_socket(address.path, key)
        # The socket is born with its final mode: no window where others may connect.
        old_umask = os.umask(0o777 & ~socket_mode)
        try:
            await web.UnixSite(runner, address.path).start()
        finally:
            os.umask(old_umask)
        return
    # reuse_port: one of `server.workers` processes sharing the port (proxy/workers.py).
    site = web.TCPSite(
        runner, address.host, address.port, backlog=1024, reuse_port=reuse_port or None
    )
    try:
        await site.start()
    except OSError as exc:
        raise ConfigError(
            f"{key}: cannot listen on {address.host}:{address.port}: {exc.strerror}"
        ) from None


def _clear_stale_socket(path: str, key: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{key}: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # nobody listens: a leftover of a dead process
        return
    finally:
        probe.close()
    raise ConfigError(f"{key}: another process is listening on {path}")


def _describe(addresses: list[object]) -> list[str]:
    described = []
    for address in addresses:
        if isinstance(address, tuple):
            host, port = address[0], address[1]
            described.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        else:
            described.append(f"unix:{address}")
    return described


async def _wait_for_stop(lifecycle: Lifecycle) -> None:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if not lifecycle.request_stop():  # a stop (signal or quit) is already under way
            log.warning("second_signal_exiting_now", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("signal_received", signal=signal.Signals(signum).name)

    # The handlers stay installed while draining: the second signal exits at once.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await lifecycle.stop_requested.wait()
