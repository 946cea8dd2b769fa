"""`stylecast stylize --ray`: the same stylization as a Ray Data job, for collections one machine cannot get through.

The job has two stages. *Listing* walks each input folder inside a Ray task, one directory at a time, and streams
the names on as it finds them: no process ever holds every name. *Stylizing* runs in a pool of actors, each holding
one :class:`Stylizer` (and one GPU where the backend needs one): it reads and hashes each file, passes over one whose
output is there and whose manifest record says it was made from this very input, model and options, and stylizes
the rest through the code local `stylize` runs (``runtime/media.py``), so an output does not depend on where it was
computed.

Nothing is lost or written twice. An output is written under the output folder's staging folder and renamed
into place (on object storage a single PUT, which only appears once complete); only then is its manifest record
written. Ray restarts an actor that dies and retries the task it held (``max_restarts``, ``max_task_retries``),
and what a killed worker left half-written stays in the staging folder, which the job removes when it ends. A file
that cannot be read, decoded or written becomes a row of ``failures.jsonl`` and never stops the job.

Ray is imported only here, and only when ``--ray`` is given: the runtime installs and runs without it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from PIL import Image

from stylecast.runtime.artifacts import read_metadata, sidecar_path
from stylecast.runtime.errors import Interrupted, StylecastError, import_optional
from stylecast.runtime.formats import BackendOptions, companion_path, runs_on_gpu
from stylecast.runtime.images import atomic_write, decode_image, encode_image, refuse_special, write_error
from stylecast.runtime.media import (
    KEEP_SUFFIXES,
    MEDIA_SUFFIXES,
    StylizeOptions,
    model_summary,
    output_name,
    run_video,
    stylize_image,
    tree_prefixes,
)
from stylecast.runtime.params import option
from stylecast.runtime.stylizer import Stylizer, style_tag
from stylecast.runtime.video import VIDEO_SUFFIXES

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

RAY_MISSING = "--ray needs Ray Data: pip install 'stylecast[ray]'"
MANIFEST = ".stylecast-manifest"  # OUT/.stylecast-manifest/<output>.json: what each output was made from
STAGING = ".stylecast-staging"  # outputs being written; whatever a killed worker left here is removed at the end
FAILURES = "failures.jsonl"
FILES = "files"  # the listing's one column: a task's files
# Retries of one file before it is reported as failed: Ray restarts a dead actor and retries its task without end
# (Ray Data's default for actor pools: max_restarts=-1, max_task_retries=-1), so a file that crashes the process every
# time is counted by the restarted actor (StylizeActor.stylize).
MAX_RETRIES = 3
CHUNK = 1 << 20
# How long the driver looks for a file still to do before it starts the Ray job. A finished job is then found
# finished in the time it takes to hash its inputs, without the cluster (joining it, starting Ray Data and the actors
# took 4-5 s, measured: most of a 200-photo rerun); a job with work left loses at most this much to the look.
FINISHED_CHECK_S = 2.0
LISTING_AHEAD = 64  # blocks (tasks' worth of files) the listing may run ahead of the actors


@dataclass
class RayCluster:
    """Whether a command runs on this machine or on a Ray cluster, and which cluster."""

    ray: bool = option(False, "Run on a Ray cluster: RAY_ADDRESS's if set, else a new local one.", "--ray")
    ray_address: str | None = option(None, "The Ray cluster to run on (auto, HOST:6379 or ray://HOST:10001); "
                                           "implies --ray.")

    @property
    def wanted(self) -> bool:
        return self.ray or self.ray_address is not None


@dataclass
class RayOptions(RayCluster):
    """`stylecast stylize --ray`: a Ray Data job (inputs and --out may then be URIs: s3://, gs://...)."""

    actors: int | None = option(None, "--ray: stylizing actors (default: one per GPU when the backend runs on "
                                      "one, else one per CPU, or per --threads CPUs); more actors than GPUs share "
                                      "them.", min=1)
    files_per_task: int = option(8, "--ray: files one actor task takes. 1 spreads a small job over every actor; "
                                    "more keep the driver's scheduling (about 10 ms of its CPU a task) from limiting "
                                    "a large cluster.", min=1)


def resolve(location: str) -> tuple[FileSystem, str]:
    """The filesystem and path of a local path or a URI: pyarrow's own filesystems (s3://, gs://, hdfs://,
    abfs://, file://) first, else any fsspec knows, through pyarrow's FSSpecHandler."""
    pafs = import_optional("pyarrow.fs", RAY_MISSING)
    if "://" not in location:
        return pafs.LocalFileSystem(), str(Path(location).absolute())
    try:
        return pafs.FileSystem.from_uri(location)
    except ValueError:  # a scheme pyarrow lacks (ArrowInvalid is a ValueError)
        pass
    except OSError as exc:
        raise StylecastError(f"{location}: cannot open ({exc}); check the URI and your credentials") from exc
    fsspec = import_optional("fsspec", f"{location}: this URI needs fsspec: pip install fsspec")
    try:
        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise StylecastError(f"{location}: no filesystem for this URI ({exc}); install its fsspec package "
                             "(s3fs, gcsfs, adlfs...) or give a local path") from exc
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def is_local(fs: FileSystem) -> bool:
    """Whether ``fs`` is the machine's own filesystem: written with renames, its special files refused."""
    return isinstance(fs, import_optional("pyarrow.fs", RAY_MISSING).LocalFileSystem)


def read_error(name: str, exc: OSError) -> StylecastError:
    """The one-line message for an input that could not be read."""
    if isinstance(exc, FileNotFoundError):
        return StylecastError(f"{name}: no such file")
    if isinstance(exc, PermissionError):
        return StylecastError(f"{name}: permission denied; check the file's permissions")
    if isinstance(exc, IsADirectoryError):
        return StylecastError(f"{name}: is a directory, not an image")
    return StylecastError(f"{name}: cannot read ({exc.strerror or exc}); check the path and your credentials")


@dataclass(frozen=True)
class Root:
    """One input as given: a folder (walked) or a file, and the output subfolder its files go to."""

    fs: FileSystem
    path: str
    uri: str  # as the user wrote it: messages name files from it
    folder: bool
    prefix: str = ""  # under --out: "" for a lone folder, else the folder's own name

    def name(self, path: str) -> str:
        return self.uri.rstrip("/") + path[len(self.path.rstrip("/")):] if self.folder else self.uri


@dataclass(frozen=True)
class Output:
    """The output folder, local or remote, as workers write it."""

    fs: FileSystem
    path: str
    uri: str

    @property
    def local(self) -> Path | None:
        return Path(self.path) if is_local(self.fs) else None

    def full(self, rel: str) -> str:
        return f"{self.path.rstrip('/')}/{rel}"

    def shown(self, rel: str) -> str:
        return f"{self.uri.rstrip('/')}/{rel}"

    def staged_file(self, rel: str) -> Path:
        """A fresh local file in the staging folder for ``rel`` (a local --out only)."""
        folder = self.local / STAGING
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{secrets.token_hex(8)}-{PurePosixPath(rel).name}"

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A local folder to write into before publishing: inside --out's staging folder when --out is local (so
        the same rename publishes), else a temporary folder on this worker."""
        if self.local is None:
            with tempfile.TemporaryDirectory(prefix="stylecast-") as folder:
                yield Path(folder)
            return
        folder = self.local / STAGING / secrets.token_hex(8)
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def publish(self, staged: Path, rel: str) -> None:
        """Put a finished local file in place as ``rel``: a rename on a local --out, else an upload that is
        deleted again if it fails part-way."""
        try:
            if self.local is not None:
                dest = self.local / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, dest)
                return
            try:
                with open(staged, "rb") as src, self.fs.open_output_stream(self.full(rel)) as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):  # nothing was stored
                    self.fs.delete_file(self.full(rel))
                raise
        except OSError as exc:
            raise write_error(Path(self.shown(rel)), exc) from exc

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Write ``rel`` whole or not at all."""
        if self.local is not None:
            staged = self.staged_file(rel)
            staged.write_bytes(data)
            self.publish(staged, rel)
            return
        try:
            with self.fs.open_output_stream(self.full(rel)) as dst:
                dst.write(data)
        except OSError as exc:
            raise write_error(Path(self.shown(rel)), exc) from exc

    def size(self, rel: str) -> int | None:
        """The size of ``rel``, or None when it is not there."""
        info = self.fs.get_file_info(self.full(rel))
        return info.size if info.is_file else None

    def record(self, rel: str) -> dict | None:
        """The manifest record of output ``rel``, or None when it is missing or not JSON (then it is redone)."""
        try:
            with self.fs.open_input_stream(self.full(f"{MANIFEST}/{rel}.json")) as handle:
                return json.loads(handle.read())
        except (FileNotFoundError, ValueError):
            return None

    def made(self, rel: str, made_from: dict) -> dict | None:
        """The manifest record of output ``rel`` when the output is there, whole, and was made from ``made_from``
        (its input, model and options); else None."""
        record = self.record(rel)
        done = (record is not None and {key: record.get(key) for key in made_from} == made_from
                and self.size(rel) == record.get("output_bytes"))
        return record if done else None

    def attempt(self, rel: str) -> int:
        """Count one more attempt at output ``rel``: how many there have been (see :meth:`StylizeActor.stylize`)."""
        marker = f"{MANIFEST}/{rel}.attempts"
        try:
            with self.fs.open_input_stream(self.full(marker)) as handle:
                before = int(handle.read() or 0)
        except (FileNotFoundError, ValueError):
            before = 0
        self.put_bytes(marker, str(before + 1).encode())
        return before + 1

    def forget(self, rel: str) -> None:
        """Drop output ``rel``'s count of attempts: it is done, or failed in a way the next run should retry."""
        try:
            self.fs.delete_file(self.full(f"{MANIFEST}/{rel}.attempts"))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise write_error(Path(self.shown(rel)), exc) from exc

    def sweep(self) -> None:
        """Remove what killed workers left half-written (a local --out; object stores keep no partial upload)."""
        if self.local is not None:
            shutil.rmtree(self.local / STAGING, ignore_errors=True)


@dataclass(frozen=True)
class ModelBundle:
    """The model files (each model, an engine's sidecar, the tiled graphs), shipped to every actor through Ray's
    object store: no node needs the driver's files or a shared filesystem."""

    files: dict[str, bytes]
    mains: tuple[str, ...]  # the models themselves, in chain order
    names: str  # the models as the user named them, joined by '+' (what a video's tags say)
    sha256: str  # each model's SHA-256, joined by '+': the manifest's model hash

    @classmethod
    def read(cls, models: list[Path]) -> ModelBundle:
        files, mains = {}, []
        for i, model in enumerate(models):
            read_metadata(model)  # a missing or foreign file fails here, once, not on every actor
            extras = [sidecar_path(model)] + [p for role in ("stats", "apply")
                                              for p in (companion_path(model, role),
                                                        sidecar_path(companion_path(model, role)))]
            for path in [model, *(p for p in extras if p.is_file())]:
                files[f"{i}/{path.relative_to(model.parent).as_posix()}"] = path.read_bytes()
            mains.append(f"{i}/{model.name}")
        return cls(files, tuple(mains), "+".join(str(m) for m in models),
                   "+".join(hashlib.sha256(files[m]).hexdigest() for m in mains))

    def materialize(self) -> list[Path]:
        """The models as files on this node, written once per node and model (actors share them, restarts reuse
        them)."""
        folder = Path(tempfile.gettempdir()) / "stylecast-models" / hashlib.sha256(self.sha256.encode()).hexdigest()[:16]
        for rel, data in self.files.items():
            dest = folder / rel
            if not dest.is_file() or dest.stat().st_size != len(data):
                atomic_write(dest, functools.partial(Path.write_bytes, data=data))
        return [folder / rel for rel in self.mains]


@dataclass(frozen=True)
class Job:
    """What the listing and the actors need to know: shipped to them once."""

    roots: tuple[Root, ...]
    out: Output
    settings: StylizeOptions
    backend: BackendOptions
    model_sha256: str
    tag: str  # the style: outputs are <stem>.<tag><suffix>
    per_task: int  # files one actor task takes
    run: str  # this run's id, in the records it writes
    options: dict = field(default_factory=dict)  # what, besides input and model, an output depends on

    def made_from(self, input_sha256: str) -> dict:
        return {"input_sha256": input_sha256, "model_sha256": self.model_sha256, "options": self.options}


def output_options(settings: StylizeOptions, backend: BackendOptions) -> dict:
    """The options an output depends on, as JSON reads them back (threads and spinning change speed only)."""
    engine = {k: v for k, v in asdict(backend).items() if k not in ("threads", "spin")}
    return json.loads(json.dumps({"settings": asdict(settings), "backend": engine}))


def _entries(fs: FileSystem, folder: str) -> list[tuple[str, bool]]:
    """(path, is a folder) of each entry of ``folder``, sorted."""
    if is_local(fs):  # pyarrow leaves broken links out of a listing: list them, so they are reported as locally
        return sorted((str(p), p.is_dir() and not p.is_symlink()) for p in Path(folder).iterdir())
    pafs = import_optional("pyarrow.fs", RAY_MISSING)
    return sorted((info.path, info.type == pafs.FileType.Directory)
                  for info in fs.get_file_info(pafs.FileSelector(folder)))


def _row(index: int, path: str, name: str, dest: PurePosixPath) -> dict:
    return {"root": index, "path": path, "name": name, "dest": dest.as_posix(),
            "video": PurePosixPath(path).suffix.lower() in VIDEO_SUFFIXES}


def list_folder(index: int, root: Root, tag: str) -> Iterator[dict]:
    """A row for every media file under a folder root, one directory listed at a time; each directory's outputs
    are named as local `stylize` names them (numbered where two inputs would share a name)."""
    pending = [root.path]
    while pending:
        folder = pending.pop()
        entries = _entries(root.fs, folder)
        pending += reversed([path for path, is_dir in entries if is_dir])
        relative = PurePosixPath(folder).relative_to(root.path)
        used: set[str] = set()
        for path, is_dir in entries:
            if is_dir or PurePosixPath(path).suffix.lower() not in MEDIA_SUFFIXES:
                continue
            name = output_name(PurePosixPath(path), tag, used.__contains__)
            used.add(name)
            yield _row(index, path, root.name(path), PurePosixPath(root.prefix) / relative / name)


def list_files(roots: list[tuple[int, Root]], tag: str) -> Iterator[dict]:
    """The inputs given as files (or missing, reported per file as locally), named as local `stylize` does."""
    used: set[str] = set()
    for index, root in roots:
        name = output_name(PurePosixPath(root.path), tag, used.__contains__)
        used.add(name)
        yield _row(index, root.path, root.uri, PurePosixPath(name))


def blocks(rows: Callable[[], Iterator[dict]], size: int) -> Iterator[Any]:
    """The rows ``size`` at a time, each batch one row of its own (a list of files) in a block of its own, handed on
    as soon as it is full: one block is one actor task, so ``size`` sets how many files a task stylizes (and a
    retry redoes). A block a file instead would cost the listing a round trip through the scheduler per file (an
    actor idled 0.5-0.7 s between its tasks, measured); files in one block of many rows would all go to one task."""
    pa = import_optional("pyarrow", RAY_MISSING)
    chunk: list[dict] = []
    for row in rows():
        chunk.append(row)
        if len(chunk) == size:
            yield pa.Table.from_pylist([{FILES: chunk}])
            chunk = []
    if chunk:
        yield pa.Table.from_pylist([{FILES: chunk}])


def listers(job: Job) -> list[Callable[[], Iterator[dict]]]:
    """The job's listings: one per folder, one for the files given by name."""
    files = [(i, root) for i, root in enumerate(job.roots) if not root.folder]
    found = [functools.partial(list_folder, i, root, job.tag) for i, root in enumerate(job.roots) if root.folder]
    return found + ([functools.partial(list_files, files, job.tag)] if files else [])


def listing(job: Job) -> Any:
    """The inputs as a Ray Data datasource: one read task per folder, one for the files given by name."""
    data = import_optional("ray.data", RAY_MISSING)
    from ray.data.block import BlockMetadata

    tasks = listers(job)

    class Listing(data.Datasource):
        count = len(tasks)

        def estimate_inmemory_data_size(self) -> None:
            return None  # unknown until listed: that is the point

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: object = None) -> list:
            meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
            return [data.ReadTask(functools.partial(blocks, lister, job.per_task), meta) for lister in tasks]

    return Listing()


RESULT_KEYS = ("name", "dest", "status", "reason", "note")


def _digest(fs: FileSystem, path: str, keep: bool) -> tuple[str, bytes]:
    """The SHA-256 of a file, and its bytes when ``keep`` (an image; a video is streamed past)."""
    digest, kept = hashlib.sha256(), []
    with fs.open_input_stream(path) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if keep:
                kept.append(chunk)
    return digest.hexdigest(), b"".join(kept)


def read_input(job: Job, row: dict, keep: bool) -> tuple[str, bytes]:
    """The SHA-256 of ``row``'s input, and its bytes when ``keep``; a file that cannot be read is one line."""
    root = job.roots[row["root"]]
    try:
        if is_local(root.fs):
            refuse_special(Path(row["path"]))  # a pipe would block the read for ever
        return _digest(root.fs, row["path"], keep=keep)
    except OSError as exc:
        raise read_error(row["name"], exc) from exc


class StylizeActor:
    """The job's second stage, one per actor: a :class:`Stylizer` loaded once, then per file read and hash it, skip
    it when its output and manifest record show it done, else decode, stylize, encode, write and record.

    The actor reads its files itself: a reading stage of its own (Ray tasks handing the bytes on) cost about 0.2 s a
    photo in scheduling on a 2-core machine, about as much as stylizing a 512 px photo (`make bench-ray`)."""

    def __init__(self, job: Job, bundle: ModelBundle) -> None:
        self.job = job
        models = bundle.materialize()
        self.stylizer = Stylizer(models, strength=job.settings.strength, options=job.backend,
                                 style=job.settings.style)
        self.restarted = import_optional("ray", RAY_MISSING).get_runtime_context().was_current_actor_reconstructed
        # The user's model names, not this node's copies: a video's tags are then the same wherever it ran.
        self.model_meta = {**model_summary(self.stylizer, models), "model": bundle.names}

    def __call__(self, batch: Any) -> dict[str, list]:
        results = [self.process(row) for files in batch.column(FILES).to_pylist() for row in files]
        return {key: [row.get(key) for row in results] for key in RESULT_KEYS}

    def process(self, row: dict) -> dict:
        out = self.job.out
        try:
            sha, data = self.read(row)
            record = out.made(row["dest"], self.job.made_from(sha))
        except StylecastError as exc:
            return {**row, "status": "failed", "reason": str(exc)}
        except OSError as exc:
            return {**row, "status": "failed", "reason": f"{out.shown(row['dest'])}: cannot look at the output "
                                                         f"({exc.strerror or exc}); check --out and your credentials"}
        if record is not None:  # done by an earlier run, or by this one in a task retried after a crash
            return {**row, "status": "done" if record.get("run") == self.job.run else "skipped"}
        return self.stylize(row, sha, data)

    def read(self, row: dict) -> tuple[str, bytes]:
        """The input's SHA-256, and its bytes (an image; a video is read again where it is stylized)."""
        return read_input(self.job, row, keep=not row["video"])

    def stylize(self, row: dict, sha: str, data: bytes) -> dict:
        """Stylize and write one file, then its manifest record. An actor Ray restarted counts its tries at each file
        (the file that killed its predecessor is among them), so a file that crashes the process every time is given
        up on rather than retried for ever; a first try costs no extra request."""
        out, dest = self.job.out, row["dest"]
        try:
            if self.restarted and out.attempt(dest) > MAX_RETRIES:
                raise StylecastError(f"{row['name']}: its worker died on each of {MAX_RETRIES + 1} tries (a crash in "
                                     "a decoder or the backend); check the file, or leave it out")
            note, size = self.video(row) if row["video"] else self.image(row, data)
            record = {"source": row["name"], **self.job.made_from(sha), "output_bytes": size, "run": self.job.run}
            out.put_bytes(f"{MANIFEST}/{dest}.json", json.dumps(record, sort_keys=True).encode())
            result = {**row, "status": "done", "note": note}
        except (StylecastError, OSError) as exc:  # OSError: the input vanished or storage failed since it was read
            reason = str(exc) if isinstance(exc, StylecastError) else str(read_error(row["name"], exc))
            result = {**row, "status": "failed", "reason": reason}
        if self.restarted:
            out.forget(dest)  # done, or a failure the worker lived through, which the next run tries afresh
        return result

    def image(self, row: dict, data: bytes) -> tuple[str, int]:
        """(Pillow's note on the input, the output's size)."""
        settings = self.job.settings
        image = decode_image(io.BytesIO(data), row["name"], allow_huge=settings.allow_huge, formats=None)
        _, result, alpha = stylize_image(self.stylizer, image, settings)
        fmt = Image.registered_extensions()[PurePosixPath(row["dest"]).suffix.lower()]
        encoded = encode_image(result, alpha, fmt, settings.quality)
        self.write(row["dest"], encoded)
        return image.note, len(encoded)

    def write(self, rel: str, data: bytes) -> None:
        self.job.out.put_bytes(rel, data)

    def video(self, row: dict) -> tuple[str, int]:
        """One video, whole, through the local video path (a remote one fetched to this worker first): (no note,
        the output's size)."""
        root, out = self.job.roots[row["root"]], self.job.out
        name = PurePosixPath(row["dest"]).name
        with out.staging() as folder:
            source = Path(row["path"])
            if not is_local(root.fs):
                source = folder / f"source{PurePosixPath(row['path']).suffix}"
                with root.fs.open_input_stream(row["path"]) as src, open(source, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
            run_video(self.stylizer, source, folder / name, self.job.settings, self.model_meta)
            size = (folder / name).stat().st_size
            out.publish(folder / name, row["dest"])
            out.publish(sidecar_path(folder / name), f"{row['dest']}.json")
        return "", size


def finished_rows(job: Job, budget_s: float = FINISHED_CHECK_S) -> list[dict] | None:
    """Every input's row, marked skipped, when each one's output and manifest record show it done; None as soon as
    one is not (or cannot be read: the actors report it), or when the look takes over ``budget_s``."""
    rows, started = [], time.perf_counter()
    for lister in listers(job):
        for row in lister():
            try:
                sha, _ = read_input(job, row, keep=False)
                done = job.out.made(row["dest"], job.made_from(sha)) is not None
            except (StylecastError, OSError):
                return None
            if not done or time.perf_counter() - started > budget_s:
                return None
            rows.append({"name": row["name"], "dest": row["dest"], "status": "skipped", "reason": None, "note": None})
    return rows


def plan_roots(inputs: list[str], out: Output) -> tuple[Root, ...]:
    """Each input as a folder or a file; refuses patterns, two folders of one name, and --out inside an input."""
    pafs = import_optional("pyarrow.fs", RAY_MISSING)
    roots = []
    for item in inputs:
        if "://" not in item and any(ch in item for ch in "*?["):
            raise StylecastError(f"{item}: --ray takes files, folders and URIs, not patterns; give the folder")
        fs, path = resolve(item)
        try:
            kind = fs.get_file_info(path).type
        except OSError as exc:
            raise StylecastError(f"{item}: cannot list ({exc}); check the URI and your credentials") from exc
        roots.append(Root(fs, path, item, folder=kind == pafs.FileType.Directory))
    prefixes = iter(tree_prefixes([r.path for r in roots if r.folder], len(roots)))
    roots = [replace(r, prefix=next(prefixes)) if r.folder else r for r in roots]
    folders = [r for r in roots if r.folder]
    for root in folders:
        inside = out.path.rstrip("/") + "/"
        if type(root.fs) is type(out.fs) and inside.startswith(root.path.rstrip("/") + "/"):
            raise StylecastError(f"--out {out.uri} is inside the input folder {root.uri}: its outputs would be "
                                 "read as inputs; choose an --out outside it")
    return tuple(roots)


def prepare_output(location: str) -> Output:
    """--out as a folder (created now when it is local, so an unusable one fails before the job starts)."""
    if PurePosixPath(location).suffix.lower() in KEEP_SUFFIXES:
        raise StylecastError(f"--out {location}: --ray writes into a folder; give --out a folder")
    fs, path = resolve(location)
    out = Output(fs, path, location)
    if out.local is not None:
        try:
            out.local.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StylecastError(f"--out {location}: cannot create this folder ({exc.strerror or exc}); choose "
                                 "another --out") from exc
    return out


@dataclass
class RaySummary:
    """What a Ray job did."""

    stylized: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    report: str = ""  # the failures report

    @property
    def rate(self) -> float:
        return self.stylized / self.seconds if self.seconds > 0 else 0.0


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (None: RAY_ADDRESS's, else a new local one) unless this process already
    has; returns whether it joined here (and so must leave)."""
    ray = import_optional("ray", RAY_MISSING)
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"--ray-address {address}" if address else "--ray"
        raise StylecastError(f"{where}: cannot reach a Ray cluster ({exc}); start one with `ray start --head`, "
                             "check the address, and for a cluster with token authentication set RAY_AUTH_MODE=token "
                             "(the token is read from RAY_AUTH_TOKEN or ~/.ray/auth_token)") from exc
    return True


@dataclass(frozen=True)
class Pool:
    """The actor pool: how many actors, and what each reserves."""

    actors: int
    cpus: float
    gpus: float | None


def plan_pool(resources: dict[str, float], gpu: bool, threads: int, asked: int | None) -> Pool:
    """One actor per GPU, or per ``threads`` CPUs. Asked for more actors than there are GPUs, they share them: an
    actor decodes, tiles and encodes on one core, and at 12 MP that, not the GPU, is what limits it
    (docs/scaling.md)."""
    if not gpu:
        return Pool(asked or max(1, int(resources.get("CPU", 1)) // threads), threads, None)
    gpus = int(resources.get("GPU", 0))
    if not gpus:
        raise StylecastError("the backend runs on a GPU but the Ray cluster has none; add GPU nodes, or choose a "
                             "CPU backend (--backend, --provider)")
    actors = asked or gpus
    return Pool(actors, 1, min(1.0, gpus / actors))


def stylize_on_ray(inputs: list[str], models: list[Path], out_location: str, settings: StylizeOptions,
                   backend: BackendOptions, options: RayOptions,
                   on_result: Callable[[dict], None] = lambda row: None,
                   actor_class: type[StylizeActor] = StylizeActor) -> RaySummary:
    """Run the job; ``on_result`` sees each finished row (name, dest, status, reason, note) as it arrives.
    ``actor_class`` is :class:`StylizeActor` or a subclass of it (the tests' actors that die mid-job)."""
    ray = import_optional("ray", RAY_MISSING)
    bundle = ModelBundle.read(models)
    out = prepare_output(out_location)
    gpu = runs_on_gpu(models, backend)
    threads = backend.threads or 1
    if not gpu:  # opened here first, a bad model or option is one line naming the user's file, not an actor's trace
        Stylizer(models, strength=settings.strength, options=replace(backend, threads=1), style=settings.style).close()
    tag = style_tag([read_metadata(m) for m in models], settings.style)
    job = Job(plan_roots(inputs, out), out, settings, backend if gpu else replace(backend, threads=threads),
              bundle.sha256, tag, options.files_per_task, secrets.token_hex(8), output_options(settings, backend))
    summary = RaySummary(report=out.shown(FAILURES))
    started, joined = time.perf_counter(), False
    try:
        finished = finished_rows(job)
        if finished is not None:
            for row in finished:
                summary.skipped += 1
                on_result(row)
            out.put_bytes(FAILURES, b"")
            summary.seconds = time.perf_counter() - started
            return summary
        joined = connect(options.ray_address)
        pool = plan_pool(ray.cluster_resources(), gpu, threads, options.actors)
        data = ray.data
        # The listing reserves no CPU (it waits on storage, and the actors may hold every CPU); that also keeps Ray
        # Data from fusing it into the actors, where one actor would list and stylize everything.
        # As many blocks as listing tasks: Ray Data would otherwise split the listing's blocks to reach its default
        # parallelism, and the actors' tasks would shrink to a file each.
        source = listing(job)
        stream = (data.read_datasource(source, num_cpus=0, override_num_blocks=source.count)
                  .map_batches(actor_class, fn_constructor_kwargs={"job": job, "bundle": bundle},
                               batch_size=1, batch_format="pyarrow",
                               compute=data.ActorPoolStrategy(size=pool.actors), num_cpus=pool.cpus,
                               num_gpus=pool.gpus))
        # A block of the listing is a few kilobytes: under Ray Data's target block size (128 MiB) its read task would
        # merge a whole folder's blocks into one, handed on only when the listing ends and stylized by one actor while
        # the others wait (measured: 2 actors ran at the speed of one). The least target keeps each block as listed.
        stream.context.target_max_block_size = 1
        # A read task runs at most this many blocks ahead of the executor (Ray Data's default: 2, sized for large
        # blocks). At 2, an actor waited 0.4-0.7 s for its next files after each task on a busy 2-core node
        # (measured); the listing's blocks are a few kilobytes, so running far ahead costs nothing. A private
        # setting of Ray Data's: where a version lacks it, the job runs as it would by default.
        if hasattr(stream.context, "_max_num_blocks_in_streaming_gen_buffer"):
            stream.context._max_num_blocks_in_streaming_gen_buffer = LISTING_AHEAD
        for row in stream.iter_rows():
            if row["status"] == "done":
                summary.stylized += 1
            elif row["status"] == "skipped":
                summary.skipped += 1
            else:
                summary.failures.append((row["name"], row["reason"]))
            on_result(row)
        summary.seconds = time.perf_counter() - started
        lines = "".join(json.dumps({"source": name, "reason": reason}) + "\n" for name, reason in summary.failures)
        out.put_bytes(FAILURES, lines.encode())
    except ray.exceptions.ActorDiedError as exc:
        if not exc.actor_init_failed:
            raise
        # Ray's message ends with the actor's own error, "Class: message": that line is the one to show.
        last = [line for line in str(exc).splitlines() if line.strip()][-1]
        raise StylecastError(f"the stylizing actors could not start: {last}") from exc
    except KeyboardInterrupt as exc:
        raise Interrupted(f"interrupted after {summary.stylized} stylized and {summary.skipped} skipped into "
                          f"{out.uri}; finished outputs are complete, and the same command finishes the job") from exc
    finally:
        out.sweep()
        if joined:
            ray.shutdown()
    return summary
