"""What a request may send, and who may send it: the upload size limit, how long its headers and body may take,
which Host it may name, the API key, and the rule that a server reachable from other machines needs one."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import socket
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

import anyio
import h11
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from stylecast.runtime.errors import StylecastError
from stylecast.serve.errors import HttpError

API_KEY_ENV = "STYLECAST_API_KEY"
HEADER_TIMEOUT_S = 10.0  # a request's headers, from the connection (or the previous answer) on
READ_TIMEOUT_S = 60.0  # a whole request body
MIN_UPLOAD_RATE = 16 << 10  # bytes/s a body must average once its first BODY_GRACE_S are over (a slow phone: ~64 KB/s)
BODY_GRACE_S = 5.0
# The names a browser sends as Host for a server on this machine. A DNS-rebinding page (evil.example re-pointed at
# 127.0.0.1) reaches a loopback server from the user's browser, but with its own name as Host.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


async def read_body(request: Request, limit: int, timeout_s: float = READ_TIMEOUT_S,
                    min_rate: float = MIN_UPLOAD_RATE) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (announced or streamed), and with
    408 (connection closed) once it is slower than ``min_rate`` bytes/s after a short grace or takes longer than
    ``timeout_s``: a client trickling its body would otherwise hold a connection and its buffer for ever."""
    announced = request.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit:
        raise HttpError(413, f"upload of {int(announced)} bytes is above this server's limit of {limit} bytes")
    chunks, size = [], 0
    start = anyio.current_time()
    with anyio.move_on_after(min(BODY_GRACE_S, timeout_s)) as reading:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"upload is above this server's limit of {limit} bytes")
            chunks.append(chunk)
            # Each byte buys 1/min_rate seconds, up to the cap: a steady slow upload passes, a trickle does not.
            reading.deadline = min(start + timeout_s, start + BODY_GRACE_S + size / min_rate)
    if reading.cancelled_caught:
        raise HttpError(408, f"request body too slow: {size} bytes in {anyio.current_time() - start:.0f} s; this "
                             f"server needs {min_rate / 1024:.0f} KiB/s and at most {timeout_s:.0f} s per upload",
                        {"Connection": "close"})
    return b"".join(chunks)


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers, and its refusals as JSON.

    uvicorn times out only idle keep-alive connections, restarting the clock on every byte, and an ASGI middleware
    runs only once the headers are in: a client sending them a byte at a time (slowloris) would hold a connection
    for ever. Here the clock starts when the connection opens or the previous answer is sent, and stops only
    when the next request's headers are complete.

    uvicorn answers a request it cannot parse, and one over its connection limit, in plain text (the latter
    without Retry-After); clients of this server read ``{"error": ...}`` from every refusal.
    """

    def __init__(self, *args: Any, header_timeout: float = HEADER_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.header_timer: asyncio.TimerHandle | None = None
        # The connection limit is checked by the app wrapper below instead of uvicorn, whose refusal is plain text.
        self.connection_limit, self.limit_concurrency = self.limit_concurrency, None
        if self.connection_limit is not None:
            self.app = self._limited(self.app)

    def _limited(self, app: ASGIApp) -> ASGIApp:
        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            # As uvicorn counts: every open connection, and every request under way but this one.
            if len(self.connections) >= self.connection_limit or len(self.tasks) > self.connection_limit:
                message = (f"this server is at its limit of {self.connection_limit} connections at once; retry "
                           "shortly (the operator sets it with --max-connections)")
                await JSONResponse({"error": message}, 503, {"Retry-After": "1", "Connection": "close"})(
                    scope, receive, send)
                return
            await app(scope, receive, send)

        return limited

    def send_400_response(self, msg: str) -> None:
        """A request h11 cannot parse (a bad Content-Length, a malformed request line or header)."""
        body = json.dumps({"error": f"malformed HTTP request ({msg.rstrip('.')}); send a valid HTTP/1.1 request"})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=body.encode()), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.header_timer is not None:
            self.header_timer.cancel()

    def _watch_headers(self) -> None:
        """Armed while the connection waits for a request's headers, disarmed once a request is under way."""
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and self.header_timer is None and not self.transport.is_closing():
            self.header_timer = self.loop.call_later(self.header_timeout, self.transport.close)
        elif not waiting and self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None


def host_name(host: str) -> str | None:
    """The name in a Host header (``[::1]:8000`` -> ``::1``), or None when it is not a plain host[:port]."""
    try:
        parts = urlsplit(f"//{host}")
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:  # an unbalanced '[' or a port that is not a number
        return None
    return parts.hostname if parts.netloc == host and parts.username is None else None


class AllowedHosts:
    """Pure ASGI middleware: requests whose Host header names none of ``names`` get 421 before any route runs
    (starlette's TrustedHostMiddleware answers in plain text, without the fix)."""

    def __init__(self, app: ASGIApp, names: Collection[str]) -> None:
        self.app = app
        self.names = {name.lower().strip("[]") for name in names}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            if host_name(host) not in self.names:
                message = (f"Host {host[:64]!r} is not a name of this server (it answers "
                           f"{', '.join(sorted(self.names))}); pass --allowed-host NAME to add one")
                await JSONResponse({"error": message}, status_code=421)(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
