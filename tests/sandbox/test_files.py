"""Direct upload to the file host, attaching the guid, and pre-signed downloads."""

from __future__ import annotations

import base64
import hashlib

import aiohttp
from yarl import URL

from .conftest import HEX32, TEAM, WEBSITE, assert_single

CONTENT = b"hello from the sandbox\n" * 100


async def _direct_upload(harness, token, content=CONTENT, md5=None):
    md5 = hashlib.md5(content).hexdigest() if md5 is None else md5
    body = {"filename": "notes.txt", "byte_size": len(content), "md5": md5}
    return await harness.json("POST", f"/teams/{TEAM}/direct_uploads", token, json=body)


def _form(direct_upload, content=CONTENT):
    form = aiohttp.FormData()
    for name in ("key", "policy", "OSSAccessKeyId", "Signature", "callback"):
        form.add_field(name, direct_upload[name])
    form.add_field("file", content, filename="notes.txt", content_type="text/plain")
    return form


def _file_host_path(url: str) -> str:
    return URL(url).raw_path_qs


async def test_direct_upload_answers_plain_json_with_a_signed_form(harness, token):
    """direct_uploads: {guid, directUpload{...}} pointing at the file host."""
    answer = await _direct_upload(harness, token)
    assert list(answer) == ["guid", "directUpload"] and HEX32.match(answer["guid"])
    form = answer["directUpload"]
    assert set(form) == {"OSSAccessKeyId", "policy", "Signature", "url", "callback", "key"}
    assert form["url"] == f"{harness.state.file_host_url}/"
    assert form["key"] == f"attachments/{answer['guid']}/notes.txt"


async def test_upload_attach_and_download_round_trip(harness, token):
    """Upload to the file host, attach the guid, fetch the signed URL: same bytes."""
    answer = await _direct_upload(harness, token)
    stored = await harness.files.post("/", data=_form(answer["directUpload"]))
    assert stored.status == 200
    upload = await harness.json(
        "POST", f"/projects/{WEBSITE}/uploads", token, json={"attfile_guid": answer["guid"]}
    )
    assert_single(upload, "uploads")
    assert upload["data"]["attributes"]["size"] == len(CONTENT)
    link = await harness.json("GET", f"/attfiles/{answer['guid']}?download=true", token)
    download = await harness.files.get(_file_host_path(link["url"]))
    assert download.status == 200
    assert await download.read() == CONTENT
    assert download.headers["Content-Type"] == "text/plain"
    assert download.headers["Content-Disposition"] == 'attachment; filename="notes.txt"'
    upload_id = upload["data"]["id"]
    assert (await harness.api("DELETE", f"/uploads/{upload_id}", token)).status == 204
    assert (await harness.api("GET", f"/uploads/{upload_id}", token)).status == 404


async def test_file_host_never_needs_and_counts_authorization(harness, token):
    """The file host works without a token and counts any Authorization header it sees."""
    answer = await _direct_upload(harness, token)
    await harness.files.post("/", data=_form(answer["directUpload"]))
    assert (await harness.stats())["file_host_authorization_headers"] == 0
    link = await harness.json("GET", f"/attfiles/{answer['guid']}", token)
    leaked = await harness.files.get(
        _file_host_path(link["url"]), headers={"Authorization": f"Bearer {token}"}
    )
    assert leaked.status == 200
    assert (await harness.stats())["file_host_authorization_headers"] == 1


async def test_md5_may_be_base64_and_a_mismatch_is_refused(harness, token):
    """A base64 md5 is accepted; content that does not match it is InvalidDigest."""
    good = base64.b64encode(hashlib.md5(CONTENT).digest()).decode()
    answer = await _direct_upload(harness, token, md5=good)
    assert (await harness.files.post("/", data=_form(answer["directUpload"]))).status == 200
    other = await _direct_upload(harness, token, md5=good)
    tampered = CONTENT.replace(b"hello", b"HELLO")
    refused = await harness.files.post("/", data=_form(other["directUpload"], tampered))
    assert refused.status == 400
    assert "<Code>InvalidDigest</Code>" in await refused.text()


async def test_forged_policy_signature_is_refused(harness, token):
    """A changed Signature is 403 SignatureDoesNotMatch and stores nothing."""
    answer = await _direct_upload(harness, token)
    forged = {**answer["directUpload"], "Signature": "AAAA"}
    refused = await harness.files.post("/", data=_form(forged))
    assert refused.status == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in await refused.text()
    assert (await harness.api("GET", f"/attfiles/{answer['guid']}", token)).status == 404


async def test_guid_is_unusable_until_uploaded(harness, token):
    """Before the file host has the bytes: attfile 404, attaching it 422."""
    answer = await _direct_upload(harness, token)
    assert (await harness.api("GET", f"/attfiles/{answer['guid']}", token)).status == 404
    response = await harness.api(
        "POST", f"/projects/{WEBSITE}/uploads", token, json={"attfile_guid": answer["guid"]}
    )
    assert response.status == 422


async def test_download_link_expires_and_cannot_be_altered(harness, token):
    """A signed URL dies after an hour of sandbox time; a changed Expires is refused."""
    answer = await _direct_upload(harness, token)
    await harness.files.post("/", data=_form(answer["directUpload"]))
    url = URL((await harness.json("GET", f"/attfiles/{answer['guid']}", token))["url"])
    altered = url.update_query(Expires=str(int(url.query["Expires"]) + 10))
    assert (await harness.files.get(altered.raw_path_qs)).status == 403
    harness.clock.now += 3601
    assert (await harness.files.get(url.raw_path_qs)).status == 403


async def test_attachments_go_on_todos_and_topics(harness, token):
    """An uploaded guid can be listed in attfile_guids of a todo or a topic."""
    answer = await _direct_upload(harness, token)
    await harness.files.post("/", data=_form(answer["directUpload"]))
    topic = await harness.json(
        "POST",
        f"/projects/{WEBSITE}/topics",
        token,
        json={"message": {"subject": "Files", "content": ""}, "attfile_guids": [answer["guid"]]},
    )
    assert topic["data"]["relationships"]["attachments"]["data"] == [
        {"id": answer["guid"], "type": "attachments"}
    ]


async def test_without_a_file_host_url_the_api_host_serves_files(make_harness):
    """With no separate file host configured, /_sandbox/files on the API host stands in."""
    harness = await make_harness()
    harness.state.file_host_url = None
    token = await harness.access_token()
    answer = await _direct_upload(harness, token)
    form_url = URL(answer["directUpload"]["url"])
    assert form_url.path == "/_sandbox/files/"
    assert (
        await harness.client.post(form_url.path, data=_form(answer["directUpload"]))
    ).status == 200
    link = URL((await harness.json("GET", f"/attfiles/{answer['guid']}", token))["url"])
    assert await (await harness.client.get(link.raw_path_qs)).read() == CONTENT
