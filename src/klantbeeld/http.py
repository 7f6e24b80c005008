"""HTTP plumbing shared by every capability's routes: ``{code, message}`` errors and key checks.

Keys come as ``Authorization: Bearer <key>`` or HTTP Basic with the key as user name (what the
Segment and RudderStack SDKs send). A route names the roles it admits; anything else is 401 (no or
unknown key) or 403 (a key of another role).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any, Callable

import orjson
from fastapi import Request
from fastapi.responses import Response

from .collect.sources import KeyRing, Principal


class ApiError(Exception):
    """An error answered as ``{"code": ..., "message": ...}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers
        self.errors = errors   # per-field problems, e.g. [{"path": "/and/1", "message": …}]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json",
                    headers=headers)


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None,
                   errors: list[dict[str, str]] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return json_response(body, status, headers)


def refuse_unstorable(*values: Any) -> None:
    """400 for input no store keeps, looked into lists and dicts: text with NUL (0x00), which
    PostgreSQL refuses in text and JSON, and integers past 64 bits, which JSON cannot carry.
    Called in a route's body, so a refused key still gets its 401 or 403 first."""
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            raise ApiError(400, "invalid_request", "text may not contain NUL (0x00) characters")
        if isinstance(value, int) and not -2**63 <= value < 2**64:
            raise ApiError(400, "invalid_request", "numbers must fit in 64 bits")
        if isinstance(value, dict):
            stack.extend(value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)


def key_from_headers(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0] or None
    return None


def require(*roles: str) -> Callable[[Request], Principal]:
    """A FastAPI dependency admitting keys of the given roles."""

    def dependency(request: Request) -> Principal:
        key = key_from_headers(request)
        if key is None:
            raise ApiError(401, "unauthorized",
                           "send an API key: Authorization: Bearer <key> (or Basic, key as user)")
        keyring: KeyRing = request.app.state.keyring
        principal = keyring.resolve(key)
        if principal is None:
            raise ApiError(401, "unauthorized", "unknown or revoked API key")
        if principal.role not in roles:
            raise ApiError(403, "forbidden",
                           f"a {principal.role} key may not do this; it needs one of: {', '.join(roles)}")
        return principal

    return dependency


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (413 beyond, checked while it streams in), gzip
    (``Content-Encoding: gzip``) inflated within the same limit (400 when it is not gzip)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"request body over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if request.headers.get("content-encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise ApiError(400, "invalid_gzip", "the body is not valid gzip") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise ApiError(413, "payload_too_large", f"decompressed body over {limit} bytes")
    return body
