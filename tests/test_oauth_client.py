"""The token endpoint's client against a raw loopback server: what it sends, and
how each way an answer can go wrong comes out.

The sandbox covers the grants themselves (tests/test_refresh.py, login); here
the server is a few lines of asyncio so that it can misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import pytest

from proxy.config import TowerConfig
from proxy.errors import OAuthError, TokenEndpointUnavailable
from proxy.oauth import OAuthClient
from proxy.tokens import TokenSet

GRANT = {
    "access_token": "fresh-access-000",
    "refresh_token": "fresh-refresh-000",
    "expires_in": 7200,
}
CUT_MID_BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"
Unavailable = TokenEndpointUnavailable


@dataclass
class TokenServer:
    """Reads one request per connection and writes `answer`; then waits for the
    client to close (a kept connection would be seen), or hangs up itself."""

    answer: bytes
    hang_up: bool = False
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            self.requests.append(head + await reader.readexactly(length))
            writer.write(self.answer)
            await writer.drain()
            if not self.hang_up:
                await reader.read()  # until the client closes
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up (an answer too large): what the test expects
        finally:
            writer.close()


def json_answer(body: object, *, status: str = "200 OK") -> bytes:
    data = json.dumps(body).encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data


@pytest.fixture
async def token_server() -> AsyncIterator[TokenServer]:
    server = TokenServer(json_answer(GRANT))
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


def tower_for(server: TokenServer) -> TowerConfig:
    base = f"http://127.0.0.1:{server.port}"
    return TowerConfig(
        client_id="app-id", client_secret="app-secret-000", api_url=f"{base}/api/v1",
        oauth_url=f"{base}/oauth",
    )  # fmt: skip


def current_token() -> TokenSet:
    return TokenSet(access_token="old-access-000", refresh_token="old-refresh-000", expires_at=0.0)


async def test_refresh_posts_the_form_with_the_current_bearer_on_a_fresh_connection_each(
    token_server: TokenServer,
) -> None:
    """Two refreshes: two connections, each a form POST to /oauth/token with the old bearer."""
    async with OAuthClient(tower_for(token_server), timeout=5) as oauth:
        first = await oauth.refresh(current_token())
        second = await oauth.refresh(current_token())
    assert first == second == GRANT
    assert token_server.connections == 2
    for request in token_server.requests:
        head, _, body = request.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "POST /oauth/token HTTP/1.1"
        assert "Content-Type: application/x-www-form-urlencoded" in lines
        assert "Accept: application/json" in lines
        assert any(line.startswith("User-Agent: tower-proxy/") for line in lines)
        assert "Authorization: Bearer old-access-000" in lines
        assert parse_qs(body.decode()) == {
            "client_id": ["app-id"],
            "client_secret": ["app-secret-000"],
            "grant_type": ["refresh_token"],
            "redirect_uri": ["urn:ietf:wg:oauth:2.0:oob"],
            "refresh_token": ["old-refresh-000"],
        }


async def test_code_exchange_sends_no_bearer(token_server: TokenServer) -> None:
    """The authorization-code grant carries the code and no Authorization header."""
    async with OAuthClient(tower_for(token_server), timeout=5) as oauth:
        assert await oauth.exchange_code("the-code-000") == GRANT
    head, _, body = token_server.requests[0].partition(b"\r\n\r\n")
    assert b"authorization:" not in head.lower()
    assert parse_qs(body.decode())["code"] == ["the-code-000"]


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (b"", Unavailable, "token endpoint unreachable (ConnectionLost"),
        (CUT_MID_BODY, Unavailable, "token endpoint unreachable (BrokenResponse"),
        (json_answer({}, status="503 Service Unavailable"), Unavailable, "answered 503"),
        (json_answer({"error": "invalid_grant"}, status="400 Bad"), OAuthError, "invalid_grant"),
        (json_answer({"pad": "x" * (1024 * 1024)}), OAuthError, "over 1048576 bytes"),
    ],
    ids=["closed-unanswered", "cut-mid-body", "503", "invalid-grant", "too-large"],
)  # fmt: skip
async def test_a_broken_answer_is_classified(
    token_server: TokenServer, answer: bytes, error: type[Exception], text: str
) -> None:
    """Each failure maps to the error the token manager expects, naming no secret."""
    token_server.answer, token_server.hang_up = answer, True
    async with OAuthClient(tower_for(token_server), timeout=5) as oauth:
        with pytest.raises(error) as raised:
            await oauth.refresh(current_token())
    assert text in str(raised.value)
    for secret in ("old-access-000", "old-refresh-000", "app-secret-000"):
        assert secret not in str(raised.value)


async def test_a_silent_endpoint_times_out(token_server: TokenServer) -> None:
    """No answer within the timeout: TokenEndpointUnavailable, 'timed out'."""
    silent = asyncio.Event()

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await silent.wait()
        writer.close()

    listener = await asyncio.start_server(never, "127.0.0.1", 0)
    token_server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        async with OAuthClient(tower_for(token_server), timeout=0.2) as oauth:
            with pytest.raises(TokenEndpointUnavailable, match="timed out"):
                await oauth.refresh(current_token())
        silent.set()
