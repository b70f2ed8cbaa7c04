"""The proxy's own error responses (SPEC section 6).

JSON `{"error": CODE, "error_description": TEXT}` with `X-Tower-Proxy-Error:
CODE`, so a client can always tell the proxy's answer from Tower's.
"""

from __future__ import annotations

import math

from .messages import Response

STATUS = {
    "not_found": 404,
    "forbidden_host": 403,
    "forbidden_origin": 403,
    "unauthorized_caller": 401,
    "method_not_allowed": 405,
    "body_too_large": 413,
    "bad_request": 400,
    "reauthorization_required": 401,
    "token_unavailable": 503,
    "upstream_unreachable": 502,
    "upstream_timeout": 504,
    "shutting_down": 503,
    # Beyond SPEC section 6, for the least-privilege and limit settings of issue 4.
    "forbidden_path": 403,
    "request_timeout": 408,
    "too_many_connections": 503,
    "internal_error": 500,  # a defect: the proxy failed before answering
}


def error_response(code: str, description: str, *, retry_after: float | None = None) -> Response:
    headers = {"X-Tower-Proxy-Error": code, "Cache-Control": "no-store"}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    body = {"error": code, "error_description": description}
    return Response.json(body, status=STATUS[code], headers=headers)
