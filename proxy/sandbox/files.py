"""The simulated file host (stands in for Aliyun OSS at alioss.tower.im).

- `POST /`: the multipart direct upload, fields `key, policy, OSSAccessKeyId,
  Signature, callback` then `file` (fields after `file` are ignored, as OSS
  does). The signed policy must match the key and the announced size; the
  `md5` given to the API, when set, must match. Success makes the guid usable.
- `GET /{key}`: a download through a pre-signed URL from `GET /attfiles/{id}`.

It never needs an Authorization header. Any request that carries one is
counted in `stats.file_host_authorization_headers`: the proxy must never
send the token here. Errors are OSS-style XML.
"""

from __future__ import annotations

from aiohttp import BodyPartReader, web
from aiohttp.typedefs import Handler

from . import oss
from .records import Attfile
from .state import SANDBOX, Sandbox

_UPLOAD_FIELDS = ("key", "policy", "OSSAccessKeyId", "Signature")


def create_file_host_app(sandbox: Sandbox) -> web.Application:
    app = web.Application(middlewares=[_count_authorization])
    app[SANDBOX] = sandbox
    app.router.add_post("/", _upload)
    app.router.add_get("/{key:.+}", _download)
    return app


@web.middleware
async def _count_authorization(request: web.Request, handler: Handler) -> web.StreamResponse:
    if "Authorization" in request.headers:
        request.config_dict[SANDBOX].stats.file_host_authorization_headers += 1
    return await handler(request)


def _oss_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<HostId>sandbox-files</HostId></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


async def _upload(request: web.Request) -> web.Response:
    sandbox = request.config_dict[SANDBOX]
    if not request.content_type.startswith("multipart/form-data"):
        return _oss_error(400, "InvalidArgument", "The body must be multipart/form-data.")
    fields: dict[str, str] = {}
    async for part in await request.multipart():
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file":
            return await _store_file(sandbox, fields, part)
        fields[part.name or ""] = await part.text()
    return _oss_error(400, "InvalidArgument", "The form has no file field.")


async def _store_file(
    sandbox: Sandbox, fields: dict[str, str], part: BodyPartReader
) -> web.Response:
    missing = [name for name in _UPLOAD_FIELDS if name not in fields]
    if missing:
        return _oss_error(400, "InvalidArgument", f"Missing form field: {missing[0]}.")
    problem = _policy_problem(sandbox, fields)
    if problem is not None:
        return problem
    attfile = _attfile_for_key(sandbox, fields["key"])
    if attfile is None:
        return _oss_error(403, "AccessDenied", "Invalid according to Policy.")
    data = bytes(await part.read())
    if len(data) != attfile.byte_size:
        return _oss_error(400, "InvalidArgument", "Your proposed upload size is not allowed.")
    if not oss.md5_matches(attfile.md5, data):
        return _oss_error(400, "InvalidDigest", "The Content-MD5 you specified is not valid.")
    attfile.data = data
    attfile.content_type = part.headers.get("Content-Type", attfile.content_type)
    return web.json_response({"guid": attfile.id, "status": "ok"})


def _policy_problem(sandbox: Sandbox, fields: dict[str, str]) -> web.Response | None:
    if fields["OSSAccessKeyId"] != oss.ACCESS_KEY_ID:
        return _oss_error(403, "InvalidAccessKeyId", "The OSS Access Key Id does not exist.")
    if not oss.signature_matches(sandbox, fields["policy"], fields["Signature"]):
        message = "The request signature we calculated does not match the signature you provided."
        return _oss_error(403, "SignatureDoesNotMatch", message)
    expires, key, _size = oss.read_policy(fields["policy"])
    if sandbox.now() > expires:
        return _oss_error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    if key != fields["key"]:
        return _oss_error(403, "AccessDenied", "Invalid according to Policy.")
    return None


def _attfile_for_key(sandbox: Sandbox, key: str) -> Attfile | None:
    for attfile in sandbox.store.attfiles.values():
        if attfile.key == key:
            return attfile
    return None


async def _download(request: web.Request) -> web.Response:
    sandbox = request.config_dict[SANDBOX]
    key = request.match_info["key"]
    attfile = _attfile_for_key(sandbox, key)
    if attfile is None or attfile.data is None:
        return _oss_error(404, "NoSuchKey", "The specified key does not exist.")
    query = request.query
    disposition = query.get("response-content-disposition")
    problem = oss.download_allowed(
        sandbox, key, query.get("Expires", ""), query.get("Signature", ""), disposition
    )
    if problem is not None:
        return _oss_error(403, "AccessDenied", problem)
    headers = {"ETag": f'"{oss.md5_hex(attfile.data)}"', "Content-Type": attfile.content_type}
    if disposition:
        headers["Content-Disposition"] = disposition
    return web.Response(body=attfile.data, headers=headers)
