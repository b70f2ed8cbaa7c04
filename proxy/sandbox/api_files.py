"""Routes for files: direct uploads, project uploads and attfile download links.

Files never pass through /api/v1. `POST /teams/{id}/direct_uploads` answers
plain JSON with a signed form for the file host; once the file host has the
bytes, the guid can be attached (`POST /projects/{id}/uploads`,
`attfile_guids` on todos and topics) and `GET /attfiles/{guid}` answers plain
JSON `{"url": ...}`, a pre-signed link on the file host.
"""

from __future__ import annotations

from aiohttp import web

from . import oss, payload
from .api_projects import project_of
from .api_teams import team_of
from .errors import NotFound, Unprocessable
from .jsonapi import collection, origin, single
from .payload import Fields
from .records import Attfile, Upload
from .respond import flag, no_content, ok, sandbox_of, store_of

routes = web.RouteTableDef()

FILE_HOST_FALLBACK_PATH = "/_sandbox/files"


def file_base(request: web.Request) -> str:
    """The file host's base URL; without one configured, its copy on this host."""
    configured = sandbox_of(request).file_host_url
    return configured.rstrip("/") if configured else f"{origin(request)}{FILE_HOST_FALLBACK_PATH}"


def _fields(request: web.Request, wrapper: str) -> Fields:
    # Documented at the top level; a Rails-style wrapper is accepted as well.
    body = payload.json_object(request)
    inner = body.get(wrapper)
    return inner if isinstance(inner, dict) else body


@routes.post("/teams/{team_id}/direct_uploads")
async def create_direct_upload(request: web.Request) -> web.Response:
    team = team_of(request)
    sandbox = sandbox_of(request)
    store = sandbox.store
    fields = _fields(request, "direct_upload")
    filename = payload.required_text(fields, "filename")
    byte_size = payload.integer(fields, "byte_size")
    if byte_size is None or byte_size < 0:
        raise Unprocessable("Byte size must be a non-negative integer")
    guid = store.new_id()
    attfile = Attfile(
        guid, team.id, filename, byte_size, payload.text(fields, "md5") or "",
        oss.object_key(guid, filename), store.now(),
    )  # fmt: skip
    store.attfiles[guid] = attfile
    callback_url = f"{origin(request)}/api/v1/attfiles/{guid}/callback"
    form = oss.upload_form(sandbox, attfile, file_base(request), callback_url)
    return web.json_response({"guid": guid, "directUpload": form})


@routes.get("/attfiles/{attfile_id}")
async def attfile_link(request: web.Request) -> web.Response:
    sandbox = sandbox_of(request)
    attfile = _uploaded(request, request.match_info["attfile_id"])
    attachment = flag(request, "download")
    url = oss.download_url(sandbox, attfile, file_base(request), attachment=attachment)
    return web.json_response({"url": url})


def _uploaded(request: web.Request, guid: str) -> Attfile:
    attfile = store_of(request).attfiles.get(guid)
    if attfile is None or attfile.data is None:
        raise NotFound(f"Couldn't find Attfile with 'id'={guid}")
    return attfile


def _upload_of(request: web.Request) -> Upload:
    store = store_of(request)
    return store.get(store.uploads, request.match_info["upload_id"], "Upload")


@routes.get("/projects/{project_id}/uploads")
async def list_uploads(request: web.Request) -> web.Response:
    project = project_of(request)
    store = store_of(request)
    uploads = [u for u in store.uploads.values() if u.project_id == project.id]
    return ok(collection(store, uploads[::-1]))


@routes.post("/projects/{project_id}/uploads")
async def create_upload(request: web.Request) -> web.Response:
    project = project_of(request)
    store = store_of(request)
    guid = payload.required_text(_fields(request, "upload"), "attfile_guid")
    attfile = store.attfiles.get(guid)
    if attfile is None or attfile.data is None:
        raise Unprocessable(f"Attachment {guid} has not been uploaded")
    now = store.now()
    upload = Upload(
        store.new_id(), project.team_id, store.next_wide_id(project.team_id), project.id,
        guid, store.my_member(project.team_id).id, now, now,
    )  # fmt: skip
    store.uploads[upload.id] = upload
    return ok(single(store, upload))


@routes.get("/uploads/{upload_id}")
async def get_upload(request: web.Request) -> web.Response:
    return ok(single(store_of(request), _upload_of(request)))


@routes.delete("/uploads/{upload_id}")
async def delete_upload(request: web.Request) -> web.Response:
    upload = _upload_of(request)
    del store_of(request).uploads[upload.id]
    return no_content()
