"""The FastAPI application: the v2 protocol under /v2, the human endpoints under /v1, /metrics and the page.

Every fault a request can cause is answered with a 4xx and a one-line JSON ``{"error": ...}``; only a fault of
the server itself is a 500, and it too carries one line, never a traceback.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stylecast.runtime.artifacts import package_version
from stylecast.runtime.errors import StylecastError, TooLarge
from stylecast.runtime.images import WRITABLE_FORMATS, LoadedImage, decode_image, encode_image
from stylecast.serve.batching import Batcher, Overloaded, TimedOut
from stylecast.serve.errors import HttpError
from stylecast.serve.limits import check_key, read_body, upload_bytes
from stylecast.serve.metrics import Metrics
from stylecast.serve.models import ModelSet, image_key
from stylecast.serve.protocol import EXTENSIONS, HEADER_LENGTH, VERSION, infer_response, model_metadata, parse_infer

PAGE = Path(__file__).parent / "page"
PAGE_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp",
               "TIFF": "image/tiff"}
ASKED_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}
# The page loads only from this server; results are shown from blob: URLs.
PAGE_POLICY = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; frame-ancestors 'none'"


@dataclass(frozen=True)
class Settings:
    batch_window_ms: float = 5.0
    max_batch: int = 8  # also the v2 model's max_batch_size, as in the --triton config
    max_queue: int = 32  # images waiting; more are refused with 503
    timeout_s: float = 30.0  # per request: queue wait plus inference
    max_upload_bytes: int = 32 << 20
    max_pixels: int = 25_000_000
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    quality: int = 95  # JPEG/WebP answers, as `stylecast stylize`


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
    batcher = Batcher(models.run, metrics, settings.batch_window_ms / 1000, settings.max_batch, settings.max_queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()  # uvicorn has answered every request by now

    app = FastAPI(title="stylecast", version=package_version("stylecast") or "dev", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
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

    async def run(key: tuple, item: object, size: int = 1) -> object:
        """Through the batcher; a full queue or a timeout is a 503 with Retry-After."""
        try:
            return await batcher.submit(key, item, settings.timeout_s, size)
        except (Overloaded, TimedOut) as exc:
            raise HttpError(503, str(exc), {"Retry-After": str(batcher.retry_after())}) from exc
        except StylecastError as exc:  # the backend failed (e.g. memory): the server's fault, said in one line
            raise HttpError(500, str(exc).splitlines()[0]) from exc

    def admit(size: int = 1) -> None:
        try:
            batcher.admit(size)
        except Overloaded as exc:
            raise HttpError(503, str(exc), {"Retry-After": str(exc.retry_after)}) from exc

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
        return [model.describe() for model in models.models.values()]

    @app.get("/v1/styles/{name}/thumbnail.jpg")
    async def style_thumbnail(name: str) -> Response:
        model = models.by_name(name)
        if model.thumbnail is None:
            raise HttpError(404, f"style {model.style!r} has no painting in --styles-dir")
        return Response(model.thumbnail, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/v1/stylize", dependencies=guarded)
    async def stylize(request: Request, style: str | None = Query(None, max_length=64),
                      strength: float = Query(1.0, ge=0.0, le=1.0),
                      asked: str | None = Query(None, alias="format", pattern="^(png|jpeg|jpg|webp)$")) -> Response:
        model = models.pick(style)
        admit()
        data = await upload_bytes(request, await read_body(request, settings.max_upload_bytes))
        if not data:
            raise HttpError(400, "empty upload: send the image as the request body or as multipart field 'image'")
        hint = f"this server accepts at most {settings.max_pixels} pixels"
        try:
            image = await run_in_threadpool(decode_image, io.BytesIO(data), "upload", False, settings.max_pixels, hint)
        except TooLarge as exc:
            raise HttpError(413, str(exc)) from exc
        except StylecastError as exc:
            raise HttpError(422, str(exc)) from exc
        result = await run(image_key(model, image.rgb), (image.rgb, strength))
        fmt = output_format(asked, image)
        body = await run_in_threadpool(encode_image, result, image.alpha, fmt, settings.quality)
        return Response(body, media_type=MEDIA_TYPES[fmt],
                        headers={"X-Stylecast-Model": model.name, "X-Stylecast-Style": model.style})

    # --- Open Inference Protocol (KServe v2), as Triton ---
    @app.get("/v2")
    async def server_metadata() -> dict:
        return {"name": "stylecast", "version": package_version("stylecast") or "dev", "extensions": EXTENSIONS}

    @app.get("/v2/health/live")
    async def live() -> Response:
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return Response(status_code=200)

    def versioned(name: str, version: str | None) -> str:
        model = models.by_name(name)
        if version not in (None, VERSION):
            raise HttpError(404, f"model {name!r} has only version {VERSION}")
        return model.name

    @app.get("/v2/models/{name}", dependencies=guarded)
    @app.get("/v2/models/{name}/versions/{version}", dependencies=guarded)
    async def v2_metadata(name: str, version: str | None = None) -> dict:
        return model_metadata(versioned(name, version), models.by_name(name).platform)

    @app.get("/v2/models/{name}/ready", dependencies=guarded)
    @app.get("/v2/models/{name}/versions/{version}/ready", dependencies=guarded)
    async def v2_ready(name: str, version: str | None = None) -> Response:
        versioned(name, version)
        return Response(status_code=200)

    @app.post("/v2/models/{name}/infer", dependencies=guarded)
    @app.post("/v2/models/{name}/versions/{version}/infer", dependencies=guarded)
    async def v2_infer(name: str, request: Request, version: str | None = None) -> Response:
        name = versioned(name, version)
        admit()
        body = await read_body(request, settings.max_upload_bytes)
        parsed = parse_infer(body, request.headers.get(HEADER_LENGTH), settings.max_batch, settings.max_pixels,
                             models.by_name(name).stylizer.min_side)
        _, _, height, width = parsed.image.shape
        result = await run(("v2", name, height, width), parsed.image, size=len(parsed.image))
        content, headers = infer_response(name, parsed, result)
        return Response(content, headers=headers)

    @app.get("/metrics", dependencies=guarded)
    async def prometheus() -> Response:
        content, media_type = metrics.render()
        return Response(content, media_type=media_type)

    return app
