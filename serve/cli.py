"""`stylecast serve`: bind the address (refusing an exposed one without a key), load the models, run uvicorn.

The socket is bound here, before uvicorn starts, so a port in use is a one-line error and ``--port 0`` can
print the port it got. SIGTERM (and Ctrl-C) stop accepting connections, let uvicorn answer every request in
flight, and exit 0. Connections are bounded by uvicorn's own settings (how many, how long idle) and by
:class:`HeaderDeadline` (how long a request's headers may take), which uvicorn lacks.
"""

from __future__ import annotations

import functools
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from stylecast.runtime.errors import StylecastError, import_optional
from stylecast.runtime.formats import BACKENDS, BackendOptions
from stylecast.runtime.params import expand_options
from stylecast.serve.limits import (
    API_KEY_ENV,
    BODY_GRACE_S,
    HEADER_TIMEOUT_S,
    LOOPBACK_NAMES,
    MIN_UPLOAD_RATE,
    READ_TIMEOUT_S,
    HeaderDeadline,
    is_loopback,
    require_key_off_loopback,
)
from stylecast.serve.ray_serve import RayServeOptions, serve_on_ray

MISSING = ("stylecast serve needs its extra and a backend's: pip install 'stylecast[serve,cpu]' (or "
           f"{', '.join(f'[serve,{row.extra}]' for row in BACKENDS.values() if row.extra != 'cpu')})")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line error naming the address."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        raise StylecastError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from exc
    return sock


def allowed_hosts(host: str, extra: list[str]) -> tuple[str, ...]:
    """The Host names answered: on loopback this machine's own and ``extra`` (DNS rebinding); elsewhere any, unless
    ``extra`` names some (the API key guards an exposed server)."""
    if is_loopback(host):
        return (*LOOPBACK_NAMES, host, *extra)
    return tuple(extra)


@expand_options
def serve(
    model: Annotated[list[Path], typer.Option(help="Exported model (.onnx or .engine); repeat to serve several.")],
    backend_options: BackendOptions,
    ray_options: RayServeOptions,
    host: Annotated[str, typer.Option(help="Address to bind. Anything but loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free port, printed at start).")] = 8000,
    api_key: Annotated[str | None, typer.Option(envvar=API_KEY_ENV, show_default=False,
                                                help="Required from clients as 'Authorization: Bearer KEY' "
                                                     "or 'X-API-Key: KEY' (health probes and the page are open).")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(help="Allow browser calls from this origin (repeatable); "
                                                               "CORS is off without it.")] = None,
    batch_window_ms: Annotated[float, typer.Option(min=0, help="How long the oldest request waits for others of "
                                                               "its size to batch with.")] = 5.0,
    max_batch: Annotated[int, typer.Option(min=1, help="Images per inference call (1: batching off); also the "
                                                       "v2 max_batch_size.")] = 8,
    max_batch_mp: Annotated[float, typer.Option(min=0.001, help="Megapixels one inference call may hold (memory "
                                                                "grows with them); a larger image runs in "
                                                                "tiles.")] = 2.1,
    max_queue_mp: Annotated[float, typer.Option(min=0.001, help="Megapixels admitted requests may hold at once, "
                                                                "from upload to answer; more get 503 + "
                                                                "Retry-After.")] = 64.0,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a request may wait and run before a 503.")] = 30.0,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body (MB): 413 above.")] = 32.0,
    max_pixels: Annotated[int, typer.Option(min=1, help="Largest image (width x height): 413 above.")] = 25_000_000,
    max_connections: Annotated[int, typer.Option(min=2, help="Open connections (and requests) at once; a request "
                                                             "beyond them gets 503.")] = 256,
    header_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a client may take to send a request's "
                                                                "headers: the connection is closed after.")] = (
        HEADER_TIMEOUT_S),
    read_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a client may take to send a request's "
                                                              "body: 408 after.")] = READ_TIMEOUT_S,
    min_upload_rate: Annotated[float, typer.Option(min=0.001, help=f"KiB/s a body must average after its first "
                                                                   f"{BODY_GRACE_S:g} s: 408 below.")] = (
        MIN_UPLOAD_RATE / 1024),
    allowed_host: Annotated[list[str] | None, typer.Option(help="Also answer requests whose Host header names this "
                                                                "(repeatable; behind a proxy). On loopback only "
                                                                "localhost, 127.0.0.1 and [::1] are answered without "
                                                                "it.")] = None,
    styles_dir: Annotated[Path, typer.Option(help="Where the page finds each style's painting (<style>.jpg).")] = Path(
        "styles"),
    log_level: Annotated[str, typer.Option(help="uvicorn log level (warning hides the access log).")] = "info",
) -> None:
    """Serve models over HTTP: KServe v2 / Triton protocol under /v2, /v1/stylize, a web page at /, /metrics."""
    require_key_off_loopback(host, api_key)
    uvicorn = import_optional("uvicorn", MISSING)
    import_optional("fastapi", MISSING)
    from stylecast.serve.app import Settings, create_app
    from stylecast.serve.models import ModelSet

    settings = Settings(batch_window_ms=batch_window_ms, max_batch=max_batch, max_batch_pixels=int(max_batch_mp * 1e6),
                        max_queue_pixels=int(max_queue_mp * 1e6), timeout_s=timeout,
                        max_upload_bytes=int(max_upload_mb * (1 << 20)), max_pixels=max_pixels, api_key=api_key,
                        cors_origins=tuple(cors_origin or ()), read_timeout_s=read_timeout,
                        min_upload_rate=min_upload_rate * 1024, allowed_hosts=allowed_hosts(host, allowed_host or []))
    if ray_options.wanted:  # the same application, as a Ray Serve deployment
        serve_on_ray(model, styles_dir, backend_options, settings, host, port, ray_options, max_connections)
        return
    models = ModelSet(model, styles_dir, backend_options)
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    names = ", ".join(f"{m.name} ({', '.join(m.styles)})" for m in models.models.values())
    print(f"stylecast serve: http://{shown}:{bound_port} serving {names}", file=sys.stderr, flush=True)
    config = uvicorn.Config(create_app(models, settings), log_level=log_level, server_header=False,
                            timeout_graceful_shutdown=timeout + 5, limit_concurrency=max_connections,
                            http=functools.partial(HeaderDeadline, header_timeout=header_timeout))
    # uvicorn re-raises the signal it stopped on once it has shut down; with these handlers that is a no-op,
    # so a graceful stop exits 0 instead of dying by the signal.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    uvicorn.Server(config).run(sockets=[sock])
