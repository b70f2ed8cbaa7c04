"""`/oauth/authorize`: the consent page a person sees, in plain HTML.

GET shows the app name, the requested scopes and one form that posts the same
parameters back as hidden fields, with an Approve and a Deny button (no
JavaScript). The sandbox's user is always signed in. Problems with the client
or the redirect URI are shown as an error page (400), never redirected, as
Doorkeeper does; later problems are sent back to the redirect URI. For the
out-of-band URI the code is shown in `<code id="authorization_code">`.
DELETE /oauth/authorize (Doorkeeper's deny) is accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape

from aiohttp import web
from yarl import URL

from .grants import GrantError, parse_scopes
from .oauth import INVALID_CLIENT
from .settings import OOB_REDIRECT_URI
from .state import SANDBOX, Sandbox

INVALID_REDIRECT_URI = "The redirect uri included is not valid."
UNSUPPORTED_RESPONSE_TYPE = "The authorization server does not support this response type."
ACCESS_DENIED = "The resource owner or authorization server denied the request."
_FORWARDED = ("client_id", "redirect_uri", "state", "response_type", "scope")


class _Refused(Exception):
    """The request cannot be shown a consent page; `response` says why."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass(frozen=True, slots=True)
class _Request:
    params: Mapping[str, str]
    redirect_uri: str
    scopes: tuple[str, ...]


async def show(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    try:
        checked = _check(sandbox, dict(request.query.items()))
    except _Refused as refused:
        return refused.response
    return _html(_consent_page(sandbox, checked))


async def decide(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    params = dict(request.query.items())
    form = await request.post()
    params |= {key: value for key, value in form.items() if isinstance(value, str)}
    try:
        checked = _check(sandbox, params)
    except _Refused as refused:
        return refused.response
    if request.method == "DELETE" or params.get("decision") == "deny":
        return _send_back(checked, {"error": "access_denied", "error_description": ACCESS_DENIED})
    code = sandbox.issue_code(" ".join(checked.scopes), checked.redirect_uri)
    if checked.redirect_uri == OOB_REDIRECT_URI:
        return _html(_code_page(code))
    return _send_back(checked, {"code": code})


def _check(sandbox: Sandbox, params: Mapping[str, str]) -> _Request:
    settings = sandbox.settings
    for name in ("client_id", "redirect_uri"):
        if not params.get(name):
            raise _Refused(_error_page(f"Missing required parameter: {name}."))
    if params["client_id"] != settings.client_id:
        raise _Refused(_error_page(INVALID_CLIENT))
    if params["redirect_uri"] not in settings.redirect_uris:
        raise _Refused(_error_page(INVALID_REDIRECT_URI))
    unchecked = _Request(params, params["redirect_uri"], ())
    if params.get("response_type") != "code":
        problem = {"error": "unsupported_response_type"}
        problem["error_description"] = UNSUPPORTED_RESPONSE_TYPE
        raise _Refused(_send_back(unchecked, problem))
    try:
        scopes = parse_scopes(params.get("scope", ""))
    except GrantError as error:
        problem = {"error": error.error, "error_description": error.description}
        raise _Refused(_send_back(unchecked, problem)) from None
    return _Request(params, params["redirect_uri"], scopes)


def _send_back(checked: _Request, answer: dict[str, str]) -> web.Response:
    """Answer through the redirect URI, or on a page for the out-of-band URI."""
    state = checked.params.get("state")
    if state:
        answer = answer | {"state": state}
    if checked.redirect_uri == OOB_REDIRECT_URI:
        return _error_page(answer.get("error_description", ""))
    location = URL(checked.redirect_uri).update_query(answer)
    return web.Response(status=302, headers={"Location": str(location)})


def _html(body: str, status: int = 200) -> web.Response:
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Tower sandbox</title>'
        f"</head><body>\n{body}\n</body></html>\n"
    )
    return web.Response(text=page, status=status, content_type="text/html")


def _error_page(message: str) -> web.Response:
    return _html(f'<h1>An error has occurred</h1>\n<p id="error">{escape(message)}</p>', 400)


def _consent_page(sandbox: Sandbox, checked: _Request) -> str:
    hidden = "\n".join(
        f'<input type="hidden" name="{name}" value="{escape(checked.params[name])}">'
        for name in _FORWARDED
        if name in checked.params
    )
    scopes = "".join(f"<li>{escape(scope)}</li>" for scope in checked.scopes)
    scope_text = f'<ul id="scopes">{scopes}</ul>' if scopes else "<p>Full access.</p>"
    return (
        f"<h1>Authorize {escape(sandbox.settings.app_name)}?</h1>\n"
        f"<p>Signed in as {escape(sandbox.store.user.email)}.</p>\n"
        f"<p>This application will be able to:</p>\n{scope_text}\n"
        '<form id="authorize" method="post" action="/oauth/authorize">\n'
        f"{hidden}\n"
        '<button type="submit" name="decision" value="approve">Approve</button>\n'
        '<button type="submit" name="decision" value="deny">Deny</button>\n'
        "</form>"
    )


def _code_page(code: str) -> str:
    return (
        "<h1>Authorization code</h1>\n"
        "<p>Copy this code and paste it into the application:</p>\n"
        f'<code id="authorization_code">{escape(code)}</code>'
    )
