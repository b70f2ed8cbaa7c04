"""Running the app on its listener until a signal, then draining.

SIGTERM/SIGINT (or `POST /-/quit`): readiness turns 503 at once, requests are
still served for `shutdown_delay` (time for load balancers to notice), then
the listener closes and in-flight requests (streams included) finish up to
`drain_timeout`, exit 0.  A second
signal exits at once.  An optional admin listener (probes, metrics) runs on
its own address and is stopped last, so readiness reads 503 until the data
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
from dataclasses import dataclass

import structlog

from . import log as proxy_log
from .admin import Lifecycle
from .app import ProxyApp
from .config import TcpAddress, UnixAddress, cannot_listen
from .errors import ConfigError
from .http_server import Handler, HttpServer
from .limits import ConnectionGate, ServerLimits

log = structlog.get_logger("proxy.server")

OnReady = Callable[[list[str]], Awaitable[None] | None]
Address = TcpAddress | UnixAddress


@dataclass(slots=True)
class Listener:
    """One listening socket and the connections it accepted."""

    server: asyncio.Server
    http: HttpServer

    @property
    def addresses(self) -> list[str]:
        return _describe([sock.getsockname() for sock in self.server.sockets])

    async def close(self, drain_timeout: float) -> None:
        """Stop accepting, let answers in progress finish (up to the timeout), close."""
        self.server.close()
        await self.http.shutdown(drain_timeout)


async def listen(
    handler: Handler,
    address: Address,
    limits: ServerLimits,
    *,
    key: str = "server.listen",
    reuse_port: bool = False,
    max_connections: int = 0,
    socket_mode: int = 0o600,
) -> Listener:
    http = HttpServer(handler, limits, ConnectionGate(max_connections) if max_connections else None)
    loop = asyncio.get_running_loop()
    if isinstance(address, UnixAddress):
        _clear_stale_socket(address.path, key)
        # The socket is born with its final mode: no window where others may connect.
        old_umask = os.umask(0o777 & ~socket_mode)
        try:
            server = await loop.create_unix_server(http, address.path, backlog=1024)
        except OSError as exc:  # no such directory, not ours to write
            raise cannot_listen(key, address, exc) from None
        finally:
            os.umask(old_umask)
        return Listener(server, http)
    # reuse_port: one of `server.workers` processes sharing the port (proxy/workers.py).
    try:
        server = await loop.create_server(
            http, address.host, address.port, backlog=1024, reuse_port=reuse_port or None
        )
    except OSError as exc:
        raise cannot_listen(key, address, exc) from None
    return Listener(server, http)


async def serve(
    app: ProxyApp,
    *,
    on_ready: OnReady | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT or a quit request, then drain and return."""
    server = app.config.server
    lifecycle = app.lifecycle
    limits = ServerLimits.from_config(server)
    await app.start()
    admin: Listener | None = None
    main: Listener | None = None
    try:
        if server.admin_address is not None:
            admin = await listen(
                app.dispatch_admin, server.admin_address, limits, key="server.admin_listen"
            )
            log.info("admin_listening", addresses=admin.addresses)
        main = await listen(
            app.dispatch,
            server.address,
            limits,
            reuse_port=reuse_port,
            max_connections=server.max_connections,
            socket_mode=server.socket_mode,
        )
        log.info("listening", addresses=main.addresses)
        if on_ready is not None:
            result = on_ready(main.addresses)
            if result is not None:
                await result
        await _wait_for_stop(lifecycle)
        log.info("draining", delay=server.shutdown_delay, timeout=server.drain_timeout)
        # Still serving for a moment so load balancers see readiness fail first.
        await asyncio.sleep(server.shutdown_delay)
        lifecycle.refusing = True
    finally:
        # The admin listener goes last: readiness reads 503 until the data listener drained.
        if main is not None:
            await main.close(server.drain_timeout)
        if admin is not None:
            await admin.close(1.0)
        await app.close()
        log.info("stopped")


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
            proxy_log.flush()
            os._exit(128 + signum)
        log.info("signal_received", signal=signal.Signals(signum).name)

    # The handlers stay installed while draining: the second signal exits at once.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await lifecycle.stop_requested.wait()
