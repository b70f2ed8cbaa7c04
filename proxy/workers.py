"""Several processes serving one TCP port (`[server] workers = N`).

The parent reserves the port with a bound, never-listening SO_REUSEPORT
socket (so `:0` resolves once and every worker binds the same port), then
forks N workers before any event loop or thread exists.  Each worker is a
complete proxy: its own loop, session and token manager.  The kernel
spreads new connections over the workers' listening sockets.  Refresh stays
single-flight across them because every manager refreshes under the shared
store's `refresh_lock()` and re-reads the store first (see tokens/manager).

Workers run in their own process group so a terminal's Ctrl-C reaches the
parent only; the parent forwards SIGTERM/SIGINT to every worker (a second
signal makes them exit at once, as for one process).  When a worker fails
(no token, a bad port: it says why on stderr itself), the parent stops the
others and, once all have stopped, exits with that first failure's code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable

from . import log
from .config import TcpAddress, cannot_listen

ServeOne = Callable[[TcpAddress], int]


def reserve_port(address: TcpAddress) -> tuple[socket.socket, TcpAddress]:
    """A bound SO_REUSEPORT socket holding the port, and the address it resolved to."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as exc:  # in use, not ours to bind: as one process says it
        sock.close()
        raise cannot_listen("server.listen", address, exc) from None
    return sock, TcpAddress(address.host, sock.getsockname()[1])


def run_workers(count: int, address: TcpAddress, serve_one: ServeOne) -> int:
    """Fork `count` workers running `serve_one(address)`; return the first failure's exit
    code, else 0.  `serve_one` reports its own errors: its exceptions are not."""
    reserved, resolved = reserve_port(address)
    children: list[int] = []
    try:
        for _ in range(count):
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the caller's stack
                os.setpgid(0, 0)
                code = 1
                try:
                    code = serve_one(resolved)
                finally:
                    log.flush()  # os._exit skips atexit, where the log is flushed
                    os._exit(code)
            children.append(pid)
        return _supervise(children)
    finally:
        reserved.close()


def _supervise(children: list[int]) -> int:
    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    first_failure = 0
    remaining = set(children)
    while remaining:
        pid, status = os.wait()
        if pid not in remaining:
            continue
        remaining.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
        if code and not first_failure:  # it stops the others, whose codes then tell nothing
            first_failure = code
            forward(signal.SIGTERM, None)
    return first_failure
