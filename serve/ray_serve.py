"""`stylecast serve --ray`: the same FastAPI application as a Ray Serve deployment, in as many replicas as asked
(or as many as the load needs, between two bounds).

Each replica builds the application with :func:`create_app`, the one `stylecast serve` runs under uvicorn, so the
endpoints, limits, batching and metrics are the same code; Ray Serve's proxy spreads requests over the replicas. The
model files and the styles' paintings travel to the replicas through Ray's object store, so no node needs the
files the command was given. Ray (and the application, which needs the [serve] extra) is imported only when
``--ray`` is given.
"""

from __future__ import annotations

import signal
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from stylecast.runtime.artifacts import read_metadata
from stylecast.runtime.errors import StylecastError, import_optional
from stylecast.runtime.formats import BackendOptions, runs_on_gpu, triton_model_name
from stylecast.runtime.params import option
from stylecast.runtime.ray_data import RAY_MISSING, ModelBundle, RayCluster, connect
from stylecast.runtime.styles_catalog import model_styles

if TYPE_CHECKING:
    from stylecast.serve.app import Settings

APP = "stylecast"  # the Ray Serve application's (and its deployment's) name


@dataclass
class RayServeOptions(RayCluster):
    """`stylecast serve --ray`: a Ray Serve deployment."""

    replicas: int = option(1, "--ray: replicas, each holding every --model (one GPU each where the backend runs on "
                              "one).", min=1)
    max_replicas: int | None = option(None, "--ray: scale between --replicas and this many replicas with the load "
                                            "(Ray Serve's autoscaling).", min=1)


class Replica:
    """One replica: the models loaded from the shipped files, and the application built over them."""

    def __init__(self, bundle: ModelBundle, paintings: dict[str, bytes], settings: Settings,
                 backend: BackendOptions) -> None:
        from stylecast.serve.models import ModelSet

        styles = Path(tempfile.mkdtemp(prefix="stylecast-styles-"))
        for name, data in paintings.items():
            (styles / name).write_bytes(data)
        self.models = ModelSet(bundle.materialize(), styles, backend)
        self.settings = settings

    def __serve_build_asgi_app__(self):  # noqa: ANN204 - the FastAPI app; Ray Serve calls this after __init__
        from stylecast.serve.app import create_app

        return create_app(self.models, self.settings)


def paintings_of(models: list[Path], styles_dir: Path) -> dict[str, bytes]:
    """The paintings the page shows for these models' styles, every style of a multi-style model's
    (``styles_dir/<style>.jpg``), by file name."""
    found = {}
    for model in models:
        for style in model_styles(read_metadata(model), str(model)):
            painting = styles_dir / f"{style}.jpg"
            if painting.is_file():
                found[painting.name] = painting.read_bytes()
    return found


def autoscaling(options: RayServeOptions, settings: Settings) -> dict:
    """A fixed number of replicas, or Ray Serve's autoscaling: a replica counts as busy with a batch's worth of
    requests in flight."""
    if options.max_replicas is None:
        return {"num_replicas": options.replicas}
    if options.max_replicas < options.replicas:
        raise StylecastError(f"--max-replicas {options.max_replicas} is below --replicas {options.replicas}; "
                             "give a larger --max-replicas")
    return {"autoscaling_config": {"min_replicas": options.replicas, "max_replicas": options.max_replicas,
                                   "target_ongoing_requests": settings.max_batch}}


def serve_on_ray(models: list[Path], styles_dir: Path, backend: BackendOptions, settings: Settings, host: str,
                 port: int, options: RayServeOptions, max_connections: int) -> None:
    """Deploy, print where it answers, and keep it up until SIGTERM or Ctrl-C; then delete the application (and
    stop the cluster if this command started it)."""
    if port == 0:
        raise StylecastError("--port 0: Ray Serve's proxy needs a fixed port; choose one (e.g. --port 8000)")
    from stylecast.serve.models import ModelSet

    bundle = ModelBundle.read(models)
    gpu = runs_on_gpu(models, backend)
    if not gpu:  # opened here first, a bad model is one line naming the user's file, not a replica's traceback
        ModelSet(models, styles_dir, replace(backend, threads=1))
    ray = import_optional("ray", RAY_MISSING)
    joined = connect(options.ray_address)
    serve = import_optional("ray.serve", RAY_MISSING)
    try:
        serve.start(http_options={"host": host, "port": port})
        # Every connection a replica would take under uvicorn (--max-connections) is let in; beyond that Ray Serve
        # queues as many and then answers 503, as the application does when its own queue is full.
        deployment = serve.deployment(
            serve.ingress()(Replica), name=APP, max_ongoing_requests=max_connections,
            max_queued_requests=max_connections,
            ray_actor_options={"num_gpus": 1} if gpu else {"num_cpus": backend.threads or 1},
            **autoscaling(options, settings))
        try:
            serve.run(deployment.bind(bundle, paintings_of(models, styles_dir), settings, backend), name=APP,
                      route_prefix="/")
        except RuntimeError as exc:
            # Ray's message ends with the replica's own error, "Class: message": that line is the one to show.
            last = [line for line in str(exc).splitlines() if line.strip()][-1]
            raise StylecastError(f"the Ray Serve application did not start: {last}") from exc
        shown = f"[{host}]" if ":" in host else host
        names = ", ".join(triton_model_name(m) for m in models)
        scale = (f"{options.replicas} replica(s)" if options.max_replicas is None
                 else f"{options.replicas} to {options.max_replicas} replicas")
        print(f"stylecast serve: http://{shown}:{port} serving {names} on Ray Serve, {scale}", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1.0):
            pass
        serve.delete(APP)
    finally:
        if joined:
            ray.shutdown()
