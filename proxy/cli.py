"""The `tower-proxy` command line: `main(argv) -> exit code`.

Exit codes: 0 success; 1 a runtime failure (Tower refused, no token for
`token`/`status`); 2 bad configuration or usage, or no token at `serve`.
No traceback ever reaches the user: every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from . import log as logging_setup
from .config import Config, TcpAddress, load_config, masked
from .errors import ConfigError, NoToken, ProxyError, StoreUnavailable
from .tokens import TokenManager, TokenSet, TokenStore, make_store

# The token client, the app and the server are imported by the commands that
# use them: `tower-proxy token` runs in shell scripts, and with a valid token
# it needs none of them (half its start-up time, bench/ scenario 6).

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2

# A command returns its exit code, or a coroutine run on a fresh event loop for
# it (`serve` runs its own loops: one per worker process).
Command = Callable[[argparse.Namespace], int | Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_CONFIG

    def run() -> int:
        outcome = args.run(args)
        return int(asyncio.run(outcome) if isinstance(outcome, Coroutine) else outcome)

    return _reported(run, serving=args.command == "serve")


def _reported(run: Callable[[], int], *, serving: bool) -> int:
    """`run()`'s exit code, or an error's: one line on stderr, no traceback.

    Also what each `serve` worker process runs (its errors would be lost otherwise)."""
    try:
        return run()
    except ConfigError as exc:
        _fail(f"config error: {exc}")
        return EXIT_CONFIG
    except NoToken as exc:
        _fail(str(exc))
        return EXIT_CONFIG if serving else EXIT_FAIL
    except ProxyError as exc:
        _fail(str(exc))
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line, no traceback
        _fail(f"unexpected error: {type(exc).__name__}: {logging_setup.SECRETS.scrub(str(exc))}")
        return EXIT_FAIL


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def _fail(message: str) -> None:
    # One write, newline included: `serve` workers failing at once share stderr, and
    # print()'s two writes (unbuffered under PYTHONUNBUFFERED) could interleave.
    sys.stderr.write(f"tower-proxy: {logging_setup.SECRETS.scrub(message)}\n")
    sys.stderr.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tower-proxy", description=("Local authenticating reverse proxy for the Tower API.")
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, run: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        if name != "sandbox":
            sub.add_argument("--config", metavar="F", help="config file (TOML)")
        return sub

    serve_cmd = command("serve", _serve_processes, "run the proxy until SIGTERM/SIGINT")
    serve_cmd.add_argument("--listen", metavar="ADDR", help="HOST:PORT or unix:/path")
    login = command("login", _login, "authorize once and store the token set")
    source = login.add_mutually_exclusive_group()
    source.add_argument("--code", metavar="C", help="the authorization code")
    source.add_argument("--redirect-url", metavar="URL", help="the whole redirect URL")
    login.add_argument("--no-browser", action="store_true", help="do not open a browser")
    status = command("status", _status, "identity, expiry, store, last refresh")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    command("token", _token, "print a valid access token (refreshing if needed)")
    command("logout", _logout, "forget the stored token set")
    command("check-config", _check_config, "validate and print the effective config")
    migrate = command(
        "migrate-store",
        _migrate_store,
        "move the stored token set from one store to another, without a new login",
    )
    migrate.add_argument("--from", dest="source", choices=("file", "redis"), required=True)
    migrate.add_argument("--to", dest="target", choices=("file", "redis"), required=True)
    migrate.add_argument(
        "--force", action="store_true", help="replace a token set the target already holds"
    )
    health = command(
        "healthcheck", _healthcheck, "exit 0 when the running proxy is ready (container probe)"
    )
    health.add_argument("--live", action="store_true", help="ask /-/healthz, not /-/readyz")
    health.add_argument("--timeout", type=float, default=5.0, metavar="S", help="default 5")
    sandbox = command("sandbox", _sandbox, "run the Tower simulator and a proxy wired to it")
    sandbox.add_argument("--port", type=_port, default=8730, help="proxy port (default 8730)")
    sandbox.add_argument(
        "--token-ttl",
        type=int,
        default=7199,
        metavar="S",
        help="token lifetime in seconds, to watch refreshes happen",
    )
    sandbox.add_argument("--seed", metavar="FILE", help="seed data JSON (default: the bundled one)")
    sandbox.add_argument("--latency-ms", type=int, default=0, help="simulated API latency")
    sandbox.add_argument(
        "--error-rate", type=float, default=0.0, help="share of API calls answered 500"
    )
    return parser


def _config(args: argparse.Namespace, **server: object) -> Config:
    overrides = {"server": {k: v for k, v in server.items() if v is not None}}
    return load_config(getattr(args, "config", None), overrides=overrides)


def _configure_logging(config: Config) -> None:
    logging_setup.configure(config.log.level, config.log.format)


# -- serve -----------------------------------------------------------------


def _serve_processes(args: argparse.Namespace) -> int:
    """One process, or `server.workers` forked ones sharing the port (proxy/workers.py)."""
    from .workers import run_workers

    config = _config(args, listen=args.listen)
    address = config.server.address
    if config.server.workers > 1 and isinstance(address, TcpAddress):
        listen = "[{}]:{}" if ":" in address.host else "{}:{}"

        def serve_one(resolved: TcpAddress) -> int:
            server = dataclasses.replace(
                config.server, listen=listen.format(resolved.host, resolved.port)
            )
            one = dataclasses.replace(config, server=server)
            return _reported(lambda: _serve_on_loop(one, reuse_port=True), serving=True)

        return run_workers(config.server.workers, address, serve_one)
    return _serve_on_loop(config, reuse_port=False)


def _serve_on_loop(config: Config, *, reuse_port: bool) -> int:
    with asyncio.Runner(loop_factory=_loop_factory(config.server.event_loop)) as runner:
        return int(runner.run(_serve(config, reuse_port=reuse_port)))


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None  # "auto" without uvloop installed; "uvloop" was checked at config load
    return uvloop.new_event_loop


async def _serve(config: Config, *, reuse_port: bool) -> int:
    from .app import create_app
    from .server import serve

    _configure_logging(config)
    store = make_store(config)
    await _require_stored_token(store)
    await serve(create_app(config, store=store), reuse_port=reuse_port)
    return EXIT_OK


async def _require_stored_token(store: TokenStore) -> None:
    """Exit 2 when a reachable store is empty; an unreachable one starts not-ready."""
    try:
        stored = await store.load()
    except StoreUnavailable:
        return  # the store logged it once (token_store_unavailable); we start not ready
    if stored is None:
        raise NoToken(f"no token stored in {store.description}: run `tower-proxy login` first")


async def _healthcheck(args: argparse.Namespace) -> int:
    from .healthcheck import probe

    result = await probe(_config(args), live=args.live, deadline=args.timeout)
    print(result.summary)
    return EXIT_OK if result.ok else EXIT_FAIL


# -- login -----------------------------------------------------------------


async def _login(args: argparse.Namespace) -> int:
    from .login import ask_stdin, exchange, store_login
    from .oauth import OAuthClient

    config = _config(args)
    _configure_logging(config)
    _require_client(config)
    code = await _obtain_code(args, config)
    async with OAuthClient(config.tower) as oauth:
        response = await exchange(oauth, code, ask_stdin)
    store = make_store(config)
    try:
        new = await store_login(store, response)
    finally:
        await store.close()
    print(
        f"Logged in as {new.email or 'unknown'}; token stored in {store.description} "
        f"(generation {new.generation}, {new.fingerprint}, "
        f"expires in {_duration(new.expires_in(time.time()))})."
    )
    return EXIT_OK


def _require_client(config: Config) -> None:
    if not config.tower.client_id or not config.tower.client_secret:
        raise ConfigError(
            "tower.client_id and tower.client_secret are required for login "
            "(set them in the config file, TOWER_CLIENT_ID/TOWER_CLIENT_SECRET "
            "or tower.client_secret_file)"
        )


async def _obtain_code(args: argparse.Namespace, config: Config) -> str:
    from .login import ask_stdin, code_from_input, open_browser
    from .oauth import authorize_url, new_state

    if args.code:
        return str(args.code)
    if args.redirect_url:
        return code_from_input(args.redirect_url)
    state = new_state()
    url = authorize_url(config.tower, state=state)
    print(f"Open this URL in a browser and approve access:\n\n  {url}\n", file=sys.stderr)
    if not args.no_browser and sys.stdin.isatty() and open_browser(url):
        print("(a browser window was opened)", file=sys.stderr)
    text = await ask_stdin("Paste the authorization code, or the whole redirect URL: ")
    return code_from_input(text, expected_state=state)


# -- status, token, logout, check-config -----------------------------------


async def _status(args: argparse.Namespace) -> int:
    config = _config(args)
    _configure_logging(config)  # a store's warnings go to stderr, never into the output
    store = make_store(config)
    try:
        current = await store.load()
    finally:
        await store.close()
    state: dict[str, object] = {"store": store.description, "logged_in": current is not None}
    if current is not None:
        state.update(current.describe(time.time()))
    if args.json:
        print(json.dumps(state, indent=2))
    else:
        print(_status_text(state))
    return EXIT_OK if current is not None else EXIT_FAIL


def _status_text(state: dict[str, object]) -> str:
    if not state["logged_in"]:
        return f"Not logged in (store: {state['store']}). Run `tower-proxy login`."
    expires_in = float(str(state["expires_in"]))
    expiry = (
        f"expires in {_duration(expires_in)}"
        if expires_in > 0
        else (f"expired {_duration(-expires_in)} ago (refreshed on next use)")
    )
    obtained = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(str(state["obtained_at"]))))
    return "\n".join(
        [
            f"identity:     {state['email'] or 'unknown'}",
            f"access token: {state['fingerprint']} (generation {state['generation']}), {expiry}",
            f"store:        {state['store']}",
            f"last refresh: {obtained} (by {state['obtained_by']})",
        ]
    )


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


async def _token(args: argparse.Namespace) -> int:
    config = _config(args)
    _configure_logging(config)
    store = make_store(config)
    try:
        stored = await store.load()
        if stored is None or _refresh_may_be_due(stored, config):
            stored = await _token_via_manager(config, store)
    finally:
        await store.close()
    print(stored.access_token)
    return EXIT_OK


def _refresh_may_be_due(stored: TokenSet, config: Config) -> bool:
    # TokenManager refreshes up to `refresh_margin` + 60 s (its jitter) early.
    return time.time() >= stored.expires_at - config.tokens.refresh_margin - 60


async def _token_via_manager(config: Config, store: TokenStore) -> TokenSet:
    """Load, and refresh when due, as the proxy would (the only path needing the token client)."""
    from .oauth import OAuthClient

    async with OAuthClient(config.tower) as oauth:
        manager = TokenManager(store, oauth, refresh_margin=config.tokens.refresh_margin)
        await manager.load()
        current = await manager.token()
        if await manager.refresh_if_due():
            current = await manager.token()
    return current


async def _logout(args: argparse.Namespace) -> int:
    config = _config(args)
    _configure_logging(config)
    store = make_store(config)
    try:
        removed = await store.delete()
    finally:
        await store.close()
    print(
        f"Token set forgotten ({store.description})."
        if removed
        else f"No token set was stored ({store.description})."
    )
    return EXIT_OK


async def _check_config(args: argparse.Namespace) -> int:
    config = _config(args)
    print(f"# effective configuration (file: {config.source or 'none'}); secrets masked")
    for section, values in masked(config).items():
        print(f"\n[{section}]")
        for key, value in values.items():
            print(f"{key} = {json.dumps(value)}")
    return EXIT_OK


async def _migrate_store(args: argparse.Namespace) -> int:
    """Copy the set into the target (compare-and-set), then forget it in the source.

    Both stores come from the same config (`tokens.path`, `tokens.redis_*`).
    The set keeps its refresh token, so exactly one store may hold it
    afterwards: two stores refreshing the same chain would break it.  Stop
    the proxies using the source store first.
    """
    if args.source == args.target:
        raise ConfigError("migrate-store: --from and --to name the same store")
    config = _config(args)
    _configure_logging(config)
    source, target = make_store(config, args.source), make_store(config, args.target)
    try:
        moved = await _move_token_set(source, target, force=args.force)
    finally:
        await source.close()
        await target.close()
    print(
        f"Moved token set (generation {moved.generation}, {moved.fingerprint}) from "
        f"{source.description} to {target.description}; set tokens.store = "
        f'"{args.target}" for every proxy sharing this identity.'
    )
    return EXIT_OK


async def _move_token_set(source: TokenStore, target: TokenStore, *, force: bool) -> TokenSet:
    async with target.refresh_lock():  # a proxy on the target must not refresh meanwhile
        current = await source.load()
        if current is None:
            raise NoToken(f"no token set stored in {source.description}")
        existing = await target.load()
        if existing is not None and not force:
            raise ProxyError(
                f"{target.description} already holds a token set (generation "
                f"{existing.generation}); add --force to replace it"
            )
        held = existing.generation if existing else 0
        moved = dataclasses.replace(current, generation=max(current.generation, held + 1))
        if not await target.save(moved, expected_generation=held):
            raise ProxyError(f"{target.description} changed during the move; run it again")
    await source.delete()
    return moved


# -- sandbox ---------------------------------------------------------------


async def _sandbox(args: argparse.Namespace) -> int:
    from .sandbox_command import run_sandbox  # imports the simulator only when used

    return await run_sandbox(
        port=args.port,
        token_ttl=args.token_ttl,
        seed_file=args.seed,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
    )
