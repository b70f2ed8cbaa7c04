"""`tower-proxy sandbox`: the simulator and an already authorized proxy.

A newcomer sees the proxy work with no Tower account: the simulator starts on
a free port, a login is performed against it through the real OAuth code
exchange, and the proxy serves on `--port` with a throwaway token store.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp

from . import log as logging_setup
from .app import create_app
from .config import Config, LogConfig, ServerConfig, TokensConfig, TowerConfig
from .errors import ConfigError
from .login import exchange, store_login
from .oauth import OAuthClient
from .sandbox import SandboxSettings, start_sandbox
from .server import serve
from .tokens import FileStore, TokenSet


async def run_sandbox(
    *,
    port: int,
    token_ttl: int,
    seed_file: str | None = None,
    latency_ms: int = 0,
    error_rate: float = 0.0,
) -> int:
    logging_setup.configure("info", "auto")
    settings = _settings(
        token_ttl=token_ttl, seed_file=seed_file, latency_ms=latency_ms, error_rate=error_rate
    )
    try:
        running = await start_sandbox(settings, host="127.0.0.1", port=0, file_port=0)
    except ValueError as error:  # a bad seed file (SeedError) surfaces at start-up
        raise ConfigError(f"sandbox: {error}") from None
    state_dir = Path(tempfile.mkdtemp(prefix="tower-proxy-sandbox-"))
    try:
        config = sandbox_config(
            running.api_base,
            port=port,
            token_ttl=token_ttl,
            token_path=state_dir / "token.json",
            client_id=running.sandbox.settings.client_id,
            client_secret=running.sandbox.settings.client_secret,
        )
        margin = config.tokens.refresh_margin
        store = FileStore(config.token_path)
        token = await _authorize(config, store, running.sandbox.issue_code())
        app = create_app(config, store=store, proactive_tick=min(15.0, token_ttl / 10))

        async def announce(addresses: list[str]) -> None:
            await _print_welcome(running.api_base, addresses[0], token, refresh_margin=margin)

        await serve(app, on_ready=announce)
    finally:
        await running.close()
        shutil.rmtree(state_dir, ignore_errors=True)
    return 0


def _settings(
    *, token_ttl: int, seed_file: str | None, latency_ms: int, error_rate: float
) -> SandboxSettings:
    """The simulator's start-up knobs; a bad value is a usage error naming it."""
    try:
        return SandboxSettings(
            token_ttl=token_ttl, seed_file=seed_file, latency_ms=latency_ms, error_rate=error_rate
        )
    except ValueError as error:
        raise ConfigError(f"sandbox: {error}") from None


def sandbox_config(
    api_base: str,
    *,
    port: int,
    token_ttl: int,
    token_path: Path,
    client_id: str,
    client_secret: str,
) -> Config:
    return Config(
        tower=TowerConfig(
            client_id=client_id,
            client_secret=client_secret,
            api_url=f"{api_base}/api/v1",
            oauth_url=f"{api_base}/oauth",
        ),
        server=ServerConfig(listen=f"127.0.0.1:{port}", drain_timeout=5),
        tokens=TokensConfig(path=str(token_path), refresh_margin=min(300.0, token_ttl * 0.2)),
        log=LogConfig(level="info", format="auto"),
    )


async def _authorize(config: Config, store: FileStore, code: str) -> TokenSet:
    async with OAuthClient(config.tower) as oauth:
        response = await exchange(oauth, code, _no_otp)
    return await store_login(store, response)


async def _no_otp(_prompt: str) -> str:
    raise RuntimeError("the sandbox user has no two-factor login")


async def _print_welcome(
    api_base: str, proxy_address: str, token: TokenSet, *, refresh_margin: float
) -> None:
    proxy = f"http://{proxy_address}/api/v1"
    ids = await _sample_ids(proxy)
    lines = [
        "",
        f"Tower simulator:  {api_base}  (OAuth at /oauth, knobs at /_sandbox/knobs)",
        f"tower-proxy:      {proxy}",
        f"Authorized as {token.email}; the token expires in "
        f"{round(token.expires_in(time.time()))}s and is refreshed before that.",
        "",
        "Try (no token needed — the proxy adds it):",
        f"  curl -s {proxy}/user",
        f"  curl -s {proxy}/teams",
        f"  curl -s '{proxy}/teams/{ids['team']}/members?page%5Bsize%5D=2'",
        f"  curl -s {proxy}/teams/{ids['team']}/projects",
        f"  curl -s {proxy}/todolists/{ids['todolist']}/todos",
        f"  curl -s -X POST {proxy}/todolists/{ids['todolist']}/todos "
        '-H \'Content-Type: application/json\' -d \'{"todo":{"content":"Try tower-proxy"}}\'',
        "",
        "Revoke the token at the simulator; the next call refreshes once and replays:",
        f"  curl -s -X POST {api_base}/_sandbox/revoke && curl -s {proxy}/user",
        "",
        _refresh_hint(token, refresh_margin),
        "Ctrl-C stops both.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _refresh_hint(token: TokenSet, refresh_margin: float) -> str:
    """Where to look for refreshes; with a short --token-ttl they come every few seconds."""
    every = max(1, round(token.expires_in(time.time()) - refresh_margin))
    return (
        f"The proxy refreshes the token about every {every}s (before it expires): "
        "watch for token_refreshed lines below.\n"
    )


async def _sample_ids(proxy: str) -> dict[str, str]:
    """Ids from the seed data, fetched through the proxy itself."""
    ids = {"team": "TEAM_ID", "todolist": "TODOLIST_ID"}
    try:
        async with aiohttp.ClientSession() as session:
            teams = await _get(session, f"{proxy}/teams")
            ids["team"] = teams["data"][0]["id"]
            projects = await _get(session, f"{proxy}/teams/{ids['team']}/projects")
            project = projects["data"][0]["id"]
            todolists = await _get(session, f"{proxy}/projects/{project}/todolists")
            ids["todolist"] = todolists["data"][0]["id"]
    except (aiohttp.ClientError, KeyError, IndexError, ValueError):
        pass  # the welcome text then shows placeholders
    return ids


async def _get(session: aiohttp.ClientSession, url: str) -> dict[str, list[dict[str, str]]]:
    async with session.get(url) as response:
        data: dict[str, list[dict[str, str]]] = json.loads(await response.read())
        return data
