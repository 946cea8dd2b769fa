"""What a request may send, and who may send it: the upload size limit, the API key, and the rule that a
server reachable from other machines needs one."""

from __future__ import annotations

import hmac
import ipaddress
import socket

from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from stylecast.runtime.errors import StylecastError
from stylecast.serve.errors import HttpError

API_KEY_ENV = "STYLECAST_API_KEY"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (announced or streamed)."""
    announced = request.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        raise HttpError(413, f"upload of {int(announced)} bytes is above this server's limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"upload is above this server's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def upload_bytes(request: Request, body: bytes) -> bytes:
    """The image: multipart field ``image`` when the request is a form, else the raw body."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body

    async def stream():  # noqa: ANN202 - the parser's async byte stream
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=8).parse()
    except MultiPartException as exc:
        raise HttpError(400, f"malformed multipart body ({exc.message})") from exc
    field = form.get("image")
    if field is None or isinstance(field, str):
        raise HttpError(400, "multipart body has no file field 'image'")
    return await field.read()


def presented_key(request: Request) -> str:
    """The key from ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    bearer = request.headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip()
    return request.headers.get("x-api-key", "")


def check_key(request: Request, key: str | None) -> None:
    """Constant-time comparison, so response timing tells nothing about the key."""
    if key is not None and not hmac.compare_digest(presented_key(request).encode(), key.encode()):
        raise HttpError(401, "missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                        {"WWW-Authenticate": "Bearer"})


def is_loopback(host: str) -> bool:
    """Every address ``host`` resolves to is a loopback address (127.0.0.0/8, ::1)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except socket.gaierror as exc:
        raise StylecastError(f"--host {host}: cannot resolve this address ({exc.strerror})") from exc
    return all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def require_key_off_loopback(host: str, key: str | None) -> None:
    """Binding beyond this machine without a key would open the models to anyone who can reach the port."""
    if key is None and not is_loopback(host):
        raise StylecastError(f"--host {host} is reachable from other machines: pass --api-key KEY or set "
                             f"{API_KEY_ENV} (or bind 127.0.0.1)")
    if key is not None and len(key) < 16:
        raise StylecastError("--api-key is too short: use at least 16 characters (e.g. `openssl rand -hex 16`)")
