"""Errors the simulated API answers with, and their one JSON shape.

    ApiError                 {"errors": [{"status", "title", "detail"}]}
    ├── BadRequest      400  body is not JSON, or not the expected wrapper
    ├── NotFound        404  no such route or record (Rails answers 404 for both)
    ├── PayloadTooLarge 413
    └── Unprocessable   422  validation failed

Handlers raise these; only the API middleware turns them into responses.
"""

from __future__ import annotations

from aiohttp import web


class ApiError(Exception):
    status = 500
    title = "Internal Server Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def response(self) -> web.Response:
        return error_response(self.status, self.title, self.detail)


class BadRequest(ApiError):
    status = 400
    title = "Bad Request"


class NotFound(ApiError):
    status = 404
    title = "Not Found"


class PayloadTooLarge(ApiError):
    status = 413
    title = "Payload Too Large"


class Unprocessable(ApiError):
    status = 422
    title = "Unprocessable Entity"


def error_response(status: int, title: str, detail: str) -> web.Response:
    error = {"status": str(status), "title": title, "detail": detail}
    return web.json_response({"errors": [error]}, status=status)
