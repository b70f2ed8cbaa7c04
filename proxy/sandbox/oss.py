"""Pre-signed upload policies and download URLs, shaped like Aliyun OSS ones.

The sandbox signs with a key only it knows (HMAC-SHA1, base64, as OSS does),
so the file host can check that a form or a URL came from the API and has not
expired. Nothing here ever involves the user's access token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from urllib.parse import urlencode

from .records import Attfile
from .state import Sandbox

ACCESS_KEY_ID = "LTAI5tSandboxAccessKey"
UPLOAD_TTL = 3600
DOWNLOAD_TTL = 3600


def object_key(guid: str, filename: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "file"
    return f"attachments/{guid}/{safe}"


def sign(sandbox: Sandbox, text: str) -> str:
    digest = hmac.new(sandbox.file_signing_key.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_matches(sandbox: Sandbox, text: str, signature: str) -> bool:
    return hmac.compare_digest(sign(sandbox, text), signature)


def upload_form(sandbox: Sandbox, attfile: Attfile, base: str, callback_url: str) -> dict[str, str]:
    expires = datetime.fromtimestamp(sandbox.now() + UPLOAD_TTL, tz=UTC)
    size = attfile.byte_size
    policy_document = {
        "expiration": expires.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "conditions": [{"key": attfile.key}, ["content-length-range", size, size]],
    }
    policy = _b64json(policy_document)
    callback = {
        "callbackUrl": callback_url,
        "callbackBody": "guid=" + attfile.id + "&size=${size}&mimeType=${mimeType}",
    }
    return {
        "OSSAccessKeyId": ACCESS_KEY_ID,
        "policy": policy,
        "Signature": sign(sandbox, policy),
        "url": f"{base}/",
        "callback": _b64json(callback),
        "key": attfile.key,
    }


def _b64json(value: object) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def read_policy(policy: str) -> tuple[float, str, int]:
    """Expiry (unix seconds), object key and exact size a signed policy allows."""
    document = json.loads(base64.b64decode(policy))
    expires = datetime.strptime(document["expiration"], "%Y-%m-%dT%H:%M:%S.000Z")
    key, size = "", -1
    for condition in document["conditions"]:
        if isinstance(condition, dict) and "key" in condition:
            key = str(condition["key"])
        elif isinstance(condition, list) and condition[0] == "content-length-range":
            size = int(condition[2])
    return expires.replace(tzinfo=UTC).timestamp(), key, size


def _download_text(key: str, expires: int, disposition: str | None) -> str:
    text = f"GET\n\n\n{expires}\n/{key}"
    return f"{text}?response-content-disposition={disposition}" if disposition else text


def download_url(sandbox: Sandbox, attfile: Attfile, base: str, *, attachment: bool) -> str:
    expires = int(sandbox.now()) + DOWNLOAD_TTL
    disposition = f'attachment; filename="{attfile.filename}"' if attachment else None
    query = {"OSSAccessKeyId": ACCESS_KEY_ID, "Expires": str(expires)}
    query["Signature"] = sign(sandbox, _download_text(attfile.key, expires, disposition))
    if disposition:
        query["response-content-disposition"] = disposition
    return f"{base}/{attfile.key}?{urlencode(query)}"


def download_allowed(
    sandbox: Sandbox, key: str, expires: str, signature: str, disposition: str | None
) -> str | None:
    """None if the signed URL is good, else the OSS error message."""
    if not expires.isdigit():
        return "Invalid argument: Expires"
    if sandbox.now() > int(expires):
        return "Request has expired."
    if not signature_matches(sandbox, _download_text(key, int(expires), disposition), signature):
        return "The request signature we calculated does not match the signature you provided."
    return None


def md5_matches(expected: str, data: bytes) -> bool:
    """Tower's `md5` may be hex or base64 (Content-MD5 style); empty means unchecked."""
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    return expected in ("", digest.hex(), base64.b64encode(digest).decode())


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
