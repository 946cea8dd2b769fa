"""The FastAPI application: the v2 protocol under /v2, the human endpoints under /v1, /metrics and the page.

Every fault a request can cause is answered with a 4xx and a one-line JSON ``{"error": ...}``; only a fault of
the server itself is a 500, and it too carries one line, never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stylecast.runtime.artifacts import package_version
from stylecast.runtime.errors import StylecastError, TooLarge
from stylecast.runtime.images import (
    WRITABLE_FORMATS,
    LoadedImage,
    Unencodable,
    check_encodable,
    decode_image,
    encode_image,
)
from stylecast.runtime.stroke import check_stroke
from stylecast.serve.batching import Batcher, Cancelled, Overloaded, TimedOut, pixels_of
from stylecast.serve.errors import HttpError
from stylecast.serve.limits import MIN_UPLOAD_RATE, READ_TIMEOUT_S, AllowedHosts, check_key, read_body, upload_bytes
from stylecast.serve.metrics import Metrics
from stylecast.serve.models import MAX_CHOICE, ModelSet, image_key
from stylecast.serve.protocol import (
    EXTENSIONS,
    HEADER_LENGTH,
    INDEX_REQUEST_BYTES,
    VERSION,
    check_index_request,
    model_config,
    model_metadata,
)
from stylecast.serve.triton import InferCodec, stream

PAGE = Path(__file__).parent / "page"
PAGE_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp",
               "TIFF": "image/tiff"}
ASKED_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}
log = logging.getLogger("stylecast.serve")
CODEC_WORKERS = 2  # uploads decoded and answers encoded at once
SHUTDOWN_GRACE_S = 5.0  # how long a stopping server waits for the inference step in progress
CLIENT_GONE = 499  # no client reads it; the metrics count given-up requests under it, as nginx logs them
T = TypeVar("T")
# The page loads only from this server; results are shown from blob: URLs.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; object-src 'none'; frame-ancestors 'none'; "
               "base-uri 'none'; form-action 'self'")


@dataclass(frozen=True)
class Settings:
    batch_window_ms: float = 5.0
    max_batch: int = 8  # also the v2 model's max_batch_size, as in the --triton config
    # Pixels one inference call may hold: a batch's memory grows with them (about 0.6 GiB a megapixel for the
    # transform net on ONNX Runtime's CPU provider), and a larger image runs alone, in tiles.
    max_batch_pixels: int = 8 * 512 * 512
    # Pixels held by admitted requests, decoded upload to encoded answer; more are refused with 503.
    max_queue_pixels: int = 64_000_000
    timeout_s: float = 30.0  # per request: queue wait plus inference
    max_upload_bytes: int = 32 << 20
    max_pixels: int = 25_000_000
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    quality: int = 95  # JPEG/WebP answers, as `stylecast stylize`
    read_timeout_s: float = READ_TIMEOUT_S  # a whole request body
    min_upload_rate: float = MIN_UPLOAD_RATE  # bytes/s a body must average after a short grace
    allowed_hosts: tuple[str, ...] = ()  # Host header names answered (empty: any)


class RequestMetrics:
    """Pure ASGI middleware: counts every answer by route template and code (a 500 from an escaped error too)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route=route, code=str(status)).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)


async def client_gone(request: Request) -> None:
    """Returns once the client has closed the connection. Its body has been read by then, so the next message
    the server passes the app is ``http.disconnect`` (starlette's streaming responses listen the same way)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def output_format(asked: str | None, image: LoadedImage) -> str:
    """The asked format, else the upload's own; formats Pillow cannot write (HEIC, GIF...) come back as PNG
    when they have alpha and JPEG otherwise."""
    if asked:
        return ASKED_FORMATS[asked]
    if image.format in WRITABLE_FORMATS:
        return image.format
    return "PNG" if image.alpha is not None else "JPEG"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HttpError)
    async def http_error(request: Request, exc: HttpError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(HTTPException)
    async def starlette_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # Nobody reads this answer; the metrics count it as the client's doing, not as a fault of the server.
        return _error(CLIENT_GONE, "the client closed the connection before sending its whole body")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = " ".join(str(part) for part in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal server error; the server log has the details")


def create_app(models: ModelSet, settings: Settings) -> FastAPI:
    """One application over ``models``; the batcher starts and stops with it (uvicorn's lifespan)."""
    metrics = Metrics()
    batcher = Batcher(models.run, metrics, settings.batch_window_ms / 1000, settings.max_batch,
                           settings.max_batch_pixels, settings.max_queue_pixels)
    # Decoding and encoding take memory and CPU in proportion to the image: a small pool of their own bounds
    # both, instead of the 40 threads of the default pool.
    codec_pool = ThreadPoolExecutor(max_workers=CODEC_WORKERS, thread_name_prefix="stylecast-codec")
    codec = InferCodec(settings.max_batch, settings.max_pixels, codec_pool)  # v2 requests' JSON, off the loop

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start(models.bind_thread, models.release_thread)
        yield
        await batcher.stop(SHUTDOWN_GRACE_S)  # uvicorn has answered or given up every request by now
        codec_pool.shutdown(wait=False, cancel_futures=True)
        codec.close()

    app = FastAPI(title="stylecast", version=package_version("stylecast") or "dev", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    if settings.allowed_hosts:  # added first, so it sits inside RequestMetrics: refusals are counted too
        app.add_middleware(AllowedHosts, names=settings.allowed_hosts)
    app.add_middleware(RequestMetrics, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", HEADER_LENGTH],
                           expose_headers=[HEADER_LENGTH, "Retry-After"])
    _install_error_handlers(app)
    page = {name: (PAGE / name).read_bytes() for name in ("index.html", *PAGE_FILES)}

    def authorized(request: Request) -> None:
        check_key(request, settings.api_key)

    guarded = [Depends(authorized)]

    async def run(key: tuple, item: object, size: int = 1, request: Request | None = None) -> object:
        """Through the batcher; a timeout is a 503 with Retry-After. With ``request``, its work is given up as
        soon as the client goes away (a tiled job stops at its next tile)."""
        work = asyncio.ensure_future(batcher.submit(key, item, settings.timeout_s, size, pixels_of(item)))
        gone = asyncio.ensure_future(client_gone(request)) if request is not None else None
        try:
            await asyncio.wait([work] if gone is None else [work, gone], return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                work.cancel()
                raise HttpError(CLIENT_GONE, "the client closed the connection before the answer")
            return work.result()
        except (Overloaded, TimedOut) as exc:
            raise HttpError(503, str(exc), {"Retry-After": str(batcher.retry_after())}) from exc
        except Cancelled as exc:  # given up between tiles; the waiter has its TimedOut already
            raise HttpError(503, str(exc), {"Retry-After": str(batcher.retry_after())}) from exc
        except StylecastError as exc:  # the backend failed (e.g. memory): the server's fault, logged here; the
            # client's line leaves out the server's paths
            log.error("inference failed: %s", str(exc).splitlines()[0])
            raise HttpError(500, "inference failed on the server; its log has the cause") from exc
        finally:
            if gone is not None:
                gone.cancel()

    async def body_of(request: Request, limit: int = settings.max_upload_bytes) -> bytes:
        return await read_body(request, limit, settings.read_timeout_s, settings.min_upload_rate)

    @contextmanager
    def admitted(pixels: int = 0) -> Iterator[None]:
        """Holds ``pixels`` of the server's budget for the block; a full budget is a 503 with Retry-After."""
        try:
            with batcher.reserve(pixels):
                yield
        except Overloaded as exc:
            raise HttpError(503, str(exc), {"Retry-After": str(exc.retry_after)}) from exc

    def admit() -> None:
        """Refuse before reading a body when the budget is already full."""
        with admitted():
            pass

    def stroke_of(stroke: float, where: str) -> float:
        """A request's stroke size, or a 400 naming ``where`` (out of range, or no OpenCV on this server)."""
        try:
            check_stroke(stroke, where)
        except StylecastError as exc:
            raise HttpError(400, str(exc)) from exc
        return stroke

    async def in_codec_pool(call: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(codec_pool, functools.partial(call, *args))

    # --- the page ---
    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return Response(page["index.html"], media_type="text/html",
                        headers={"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff"})

    @app.get("/page/app.js", include_in_schema=False)
    async def page_script() -> Response:
        return Response(page["app.js"], media_type=PAGE_FILES["app.js"])

    @app.get("/page/style.css", include_in_schema=False)
    async def page_style() -> Response:
        return Response(page["style.css"], media_type=PAGE_FILES["style.css"])

    # --- human endpoints ---
    @app.get("/v1/styles", dependencies=guarded)
    async def styles() -> list[dict]:
        return [entry for model in models.models.values() for entry in model.describe()]

    def thumbnail_of(model_name: str, style: str | None) -> Response:
        """Open to the page's <img> tags, which send no key: so its 404 names no other model or style."""
        model = models.models.get(model_name)
        jpeg = None if model is None else model.thumbnails.get(model.styles[0] if style is None else style)
        if jpeg is None:
            raise HttpError(404, f"no thumbnail for {model_name[:64]!r}: GET /v1/styles lists the styles with one")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/v1/styles/{name}/thumbnail.jpg")
    async def style_thumbnail(name: str) -> Response:
        """A model's style (a multi-style model's first)."""
        return thumbnail_of(name, None)

    @app.get("/v1/styles/{name}/{style}/thumbnail.jpg")
    async def multi_style_thumbnail(name: str, style: str) -> Response:
        """One style of a multi-style model."""
        return thumbnail_of(name, style)

    @app.post("/v1/stylize", dependencies=guarded)
    async def stylize(request: Request, style: str | None = Query(None, max_length=MAX_CHOICE),
                      model: str | None = Query(None, max_length=64),
                      strength: float = Query(1.0, ge=0.0, le=1.0), stroke: float = Query(1.0),
                      asked: str | None = Query(None, alias="format", pattern="^(png|jpeg|jpg|webp)$")) -> Response:
        stroke = stroke_of(stroke, "stroke")
        served, vector = models.pick(style, model)
        with metrics.stats.request(served.name) as timing:
            admit()
            data = await upload_bytes(request, await body_of(request))
            if not data:
                raise HttpError(400, "empty upload: send the image as the request body or as multipart field "
                                     "'image'")
            hint = f"this server accepts at most {settings.max_pixels} pixels"
            try:
                with timing.input():
                    image = await in_codec_pool(decode_image, io.BytesIO(data), "upload", False,
                                                settings.max_pixels, hint)
            except TooLarge as exc:
                raise HttpError(413, str(exc)) from exc
            except StylecastError as exc:
                raise HttpError(422, str(exc)) from exc
            del data  # the compressed upload is not needed past decoding
            fmt = output_format(asked, image)
            try:  # before any inference: an answer the format cannot hold is known from the size alone
                check_encodable(image.rgb.shape[1], image.rgb.shape[0], fmt, "ask for format=png")
            except Unencodable as exc:
                raise HttpError(422, str(exc)) from exc
            with admitted(pixels_of(image.rgb)):
                key = image_key(served, image.rgb, settings.max_batch_pixels, stroke)
                result = await run(key, (image.rgb, strength, vector, stroke), request=request)
                with timing.output():
                    body = await in_codec_pool(encode_image, result, image.alpha, fmt, settings.quality)
        return Response(body, media_type=MEDIA_TYPES[fmt],
                        headers={"X-Stylecast-Model": served.name, "X-Stylecast-Style": served.label(vector)})

    # --- Open Inference Protocol (KServe v2), as Triton ---
    @app.get("/v2")
    async def server_metadata() -> dict:
        return {"name": "stylecast", "version": package_version("stylecast") or "dev", "extensions": EXTENSIONS}

    @app.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        """Not ready once the dispatcher has stopped: no request would ever be answered."""
        if not batcher.running:
            raise HttpError(503, "the inference dispatcher is not running; the server log has the cause")
        return Response(status_code=200)

    def versioned(name: str, version: str | None) -> str:
        model = models.by_name(name)
        if version not in (None, VERSION):
            raise HttpError(404, f"model {name!r} has only version {VERSION}")
        return model.name

    # Registered before /v2/models/{name}, which would otherwise take "stats" for a model's name.
    @app.get("/v2/models/stats", dependencies=guarded)
    async def v2_all_stats() -> dict:
        return metrics.stats.report(list(models.models), VERSION)

    @app.get("/v2/models/{name}", dependencies=guarded)
    @app.get("/v2/models/{name}/versions/{version}", dependencies=guarded)
    async def v2_metadata(name: str, version: str | None = None) -> dict:
        model = models.by_name(versioned(name, version))
        return model_metadata(model.name, model.platform, len(model.styles))

    @app.get("/v2/models/{name}/ready", dependencies=guarded)
    @app.get("/v2/models/{name}/versions/{version}/ready", dependencies=guarded)
    async def v2_ready(name: str, version: str | None = None) -> Response:
        versioned(name, version)
        return Response(status_code=200)

    @app.get("/v2/models/{name}/config", dependencies=guarded)
    @app.get("/v2/models/{name}/versions/{version}/config", dependencies=guarded)
    async def v2_config(name: str, version: str | None = None) -> dict:
        model = models.by_name(versioned(name, version))
        return model_config(model.name, model.platform, settings.max_batch, settings.batch_window_ms / 1000,
                            len(model.styles))

    @app.get("/v2/models/{name}/stats", dependencies=guarded)
    @app.get("/v2/models/{name}/versions/{version}/stats", dependencies=guarded)
    async def v2_stats(name: str, version: str | None = None) -> dict:
        return metrics.stats.report([versioned(name, version)], VERSION)

    @app.post("/v2/repository/index", dependencies=guarded)
    async def v2_repository_index(request: Request) -> list[dict]:
        check_index_request(await body_of(request, INDEX_REQUEST_BYTES))
        return [{"name": name, "version": VERSION, "state": "READY"} for name in models.models]

    @app.post("/v2/repository/models/{name}/load", dependencies=guarded)
    @app.post("/v2/repository/models/{name}/unload", dependencies=guarded)
    async def v2_repository_load(name: str) -> Response:
        versioned(name, None)
        raise HttpError(400, "this server's models are fixed when it starts (--model): it does not load or unload")

    @app.post("/v2/models/{name}/infer", dependencies=guarded)
    @app.post("/v2/models/{name}/versions/{version}/infer", dependencies=guarded)
    async def v2_infer(name: str, request: Request, version: str | None = None) -> Response:
        name = versioned(name, version)
        with metrics.stats.request(name) as timing:
            admit()
            body = await body_of(request)
            model = models.by_name(name)
            with timing.input():
                parsed = await codec.parse(body, request.headers.get(HEADER_LENGTH), model.stylizer.min_side,
                                           len(model.styles))
            batch, _, height, width = parsed.image.shape
            model.check_tensor(height, width)
            style = model.v2_styles(parsed.style, parsed.choice, batch)
            stroke = stroke_of(parsed.stroke, "parameters.stroke")
            with admitted(pixels_of(parsed.image)):
                # the key leaves the style out: requests in different styles run as one batch, a row each
                result = await run(("v2", name, height, width, stroke), (parsed.image, style, stroke), batch, request)
                with timing.output():
                    parts, headers = await codec.answer(name, parsed, result)
        return StreamingResponse(stream(parts), headers=headers)  # tens of MiB sent whole would stall the loop

    @app.get("/metrics", dependencies=guarded)
    async def prometheus() -> Response:
        content, media_type = metrics.render()
        return Response(content, media_type=media_type)

    return app
