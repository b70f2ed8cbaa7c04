"""The `tower-proxy` command line: `main(argv) -> exit code`.

Exit codes: 0 success; 1 a runtime failure (Tower refused, no token for
`token`/`status`); 2 bad configuration or usage, or no token at `serve`.
No traceback ever reaches the user: every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aiohttp

from . import log as logging_setup
from .app import LIFECYCLE, create_app
from .config import Config, load_config, masked
from .errors import ConfigError, NoToken, ProxyError
from .login import ask_stdin, code_from_input, exchange, open_browser, store_login
from .oauth import OAuthClient, authorize_url, new_state, ssl_context
from .server import serve
from .tokens import TokenManager, make_store

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        return int(asyncio.run(args.run(args)))
    except ConfigError as exc:
        _fail(f"config error: {exc}")
        return EXIT_CONFIG
    except NoToken as exc:
        _fail(str(exc))
        return EXIT_CONFIG if args.command == "serve" else EXIT_FAIL
    except ProxyError as exc:
        _fail(str(exc))
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line, no traceback
        _fail(f"unexpected error: {type(exc).__name__}: {logging_setup.SECRETS.scrub(str(exc))}")
        return EXIT_FAIL


def _fail(message: str) -> None:
    print(f"tower-proxy: {logging_setup.SECRETS.scrub(message)}", file=sys.stderr)


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

    serve_cmd = command("serve", _serve, "run the proxy until SIGTERM/SIGINT")
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
    sandbox = command("sandbox", _sandbox, "run the Tower simulator and a proxy wired to it")
    sandbox.add_argument("--port", type=int, default=8730, help="proxy port (default 8730)")
    sandbox.add_argument(
        "--token-ttl",
        type=int,
        default=7199,
        metavar="S",
        help="token lifetime in seconds, to watch refreshes happen",
    )
    return parser


def _config(args: argparse.Namespace, **server: object) -> Config:
    overrides = {"server": {k: v for k, v in server.items() if v is not None}}
    return load_config(getattr(args, "config", None), overrides=overrides)


def _configure_logging(config: Config) -> None:
    logging_setup.configure(config.log.level, config.log.format)


# -- serve -----------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> int:
    config = _config(args, listen=args.listen)
    _configure_logging(config)
    store = make_store(config)
    if await store.load() is None:
        raise NoToken(f"no token stored in {store.description}: run `tower-proxy login` first")
    app = create_app(config, store=store)
    await serve(
        app,
        config.server.address,
        lifecycle=app[LIFECYCLE],
        drain_timeout=config.server.drain_timeout,
        shutdown_delay=config.server.shutdown_delay,
    )
    return EXIT_OK


# -- login -----------------------------------------------------------------


async def _login(args: argparse.Namespace) -> int:
    config = _config(args)
    _configure_logging(config)
    _require_client(config)
    code = await _obtain_code(args, config)
    async with _session(config) as session:
        response = await exchange(OAuthClient(config.tower, session), code, ask_stdin)
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
    async with _session(config) as session:
        manager = TokenManager(
            store, OAuthClient(config.tower, session), refresh_margin=config.tokens.refresh_margin
        )
        try:
            await manager.load()
            current = await manager.token()
            if await manager.refresh_if_due():
                current = await manager.token()
        finally:
            await store.close()
    print(current.access_token)
    return EXIT_OK


async def _logout(args: argparse.Namespace) -> int:
    config = _config(args)
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


# -- sandbox ---------------------------------------------------------------


async def _sandbox(args: argparse.Namespace) -> int:
    from .sandbox_command import run_sandbox  # imports the simulator only when used

    return await run_sandbox(port=args.port, token_ttl=args.token_ttl)


def _session(config: Config) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(ssl=ssl_context(config.tower))
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
