"""The consent page at /oauth/authorize, driven like a browser without JavaScript."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

from proxy.sandbox.authorize import ACCESS_DENIED, INVALID_REDIRECT_URI

from .conftest import CALLBACK, CLIENT, OOB

_VOID = {"input", "meta", "br", "hr", "img", "link"}


class _Page(HTMLParser):
    """Collects the form's fields, its buttons, and the text of id'd elements."""

    def __init__(self) -> None:
        super().__init__()
        self.form: dict[str, str] = {}
        self.hidden: dict[str, str] = {}
        self.buttons: list[tuple[str, str]] = []
        self.texts: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.form = values
        elif tag == "input" and values.get("type") == "hidden":
            self.hidden[values["name"]] = values["value"]
        elif tag == "button":
            self.buttons.append((values["name"], values["value"]))
        if tag not in _VOID:
            self._open.append(values.get("id"))

    def handle_data(self, data: str) -> None:
        for id_ in filter(None, self._open):
            self.texts[id_] = self.texts.get(id_, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag not in _VOID and self._open:
            self._open.pop()


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _query(redirect_uri: str = OOB, **extra: str) -> dict[str, str]:
    return {
        "client_id": CLIENT["client_id"],
        "redirect_uri": redirect_uri,
        "response_type": "code",
        **extra,
    }


async def test_consent_page_shows_app_scopes_and_an_approve_form(harness):
    """GET shows the app name, the scopes, hidden fields and Approve/Deny buttons."""
    response = await harness.client.get(
        "/oauth/authorize", params=_query(scope="read write", state="s1")
    )
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    page = _parse(html)
    assert "Sandbox App" in html
    assert page.texts["scopes"] == "readwrite"
    assert (page.form["method"], page.form["action"]) == ("post", "/oauth/authorize")
    assert page.hidden == _query(scope="read write", state="s1")
    assert page.buttons == [("decision", "approve"), ("decision", "deny")]


async def test_approving_the_oob_form_shows_a_code_that_buys_a_token(harness):
    """POSTing the form back gives the code on a page; the code exchanges for a token."""
    page = _parse(await (await harness.client.get("/oauth/authorize", params=_query())).text())
    approved = await harness.client.post(
        page.form["action"], data={**page.hidden, "decision": "approve"}
    )
    assert approved.status == 200
    code = _parse(await approved.text()).texts["authorization_code"]
    token = await harness.client.post(
        "/oauth/token",
        data={**CLIENT, "grant_type": "authorization_code", "code": code, "redirect_uri": OOB},
    )
    assert token.status == 200


async def test_approving_an_https_callback_redirects_with_code_and_state(harness):
    """For a registered https URI, Approve is a 302 to it with code and state."""
    form = {**_query(CALLBACK, state="xyz"), "decision": "approve"}
    response = await harness.client.post("/oauth/authorize", data=form, allow_redirects=False)
    assert response.status == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"]
    assert len(query["code"][0]) == 64


async def test_posting_without_a_decision_approves(harness):
    """A form posted back without a button value is an approval, as a plain POST is."""
    response = await harness.client.post(
        "/oauth/authorize", data=_query(CALLBACK), allow_redirects=False
    )
    assert "code=" in response.headers["Location"]


async def test_deny_redirects_with_access_denied(harness):
    """Deny sends the browser back with error=access_denied and the state."""
    form = {**_query(CALLBACK, state="s"), "decision": "deny"}
    response = await harness.client.post("/oauth/authorize", data=form, allow_redirects=False)
    assert response.status == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query == {
        "error": ["access_denied"],
        "error_description": [ACCESS_DENIED],
        "state": ["s"],
    }
    assert harness.state.credentials.secrets() == []


async def test_unregistered_redirect_uri_is_an_error_page(harness):
    """A redirect URI the app did not register: 400 page with Doorkeeper's message."""
    response = await harness.client.get(
        "/oauth/authorize", params=_query("https://evil.example/cb")
    )
    assert response.status == 400
    assert _parse(await response.text()).texts["error"] == INVALID_REDIRECT_URI


async def test_unknown_client_is_an_error_page(harness):
    """An unknown client_id is never redirected: 400 error page."""
    response = await harness.client.get(
        "/oauth/authorize", params={**_query(), "client_id": "other"}
    )
    assert response.status == 400
    assert "unknown client" in _parse(await response.text()).texts["error"]


async def test_unknown_scope_is_sent_back_as_invalid_scope(harness):
    """A scope Tower does not know goes back to the redirect URI as invalid_scope."""
    response = await harness.client.get(
        "/oauth/authorize", allow_redirects=False, params=_query(CALLBACK, scope="admin")
    )
    assert response.status == 302
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["invalid_scope"]
