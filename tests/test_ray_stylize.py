"""`stylecast stylize --ray`: the Ray Data job gives local `stylize`'s outputs, skips what is done, and survives a
worker killed mid-job. Runs on the 2-CPU local Ray cluster of conftest's `cluster` fixture."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from stylecast.benchmarks.media.synthetic import moving_frames, write_video
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import BackendOptions, runs_on_gpu
from stylecast.runtime.media import StylizeOptions
from stylecast.runtime.ray_data import (
    MANIFEST,
    STAGING,
    Output,
    Pool,
    RayOptions,
    StylizeActor,
    list_folder,
    plan_pool,
    plan_roots,
    prepare_output,
    resolve,
    stylize_on_ray,
)

from .conftest import DATA, run_cli

ray = pytest.importorskip("ray", reason="the Ray job needs its extra: pip install 'stylecast[ray]'")
pytestmark = pytest.mark.usefixtures("deadline")

# Ray turns token authentication on for a local cluster; a client given its address must ask for it.
JOIN = {"RAY_AUTH_MODE": "token"}
# The same tiles locally and on the actors: the tiny photos then run through the tiled path too.
FLAGS = ["--threads", "1", "--tile", "48", "--overlap", "8"]
SETTINGS = StylizeOptions(tile=48, overlap=8)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """Photos (one large enough for several tiles, one with alpha, one in a subfolder), a bad file and a video."""
    folder = tmp_path_factory.mktemp("media")
    for photo in sorted((DATA / "photos").glob("*.jpg")):
        (folder / photo.name).write_bytes(photo.read_bytes())
    with Image.open(DATA / "photos" / "astronaut.jpg") as img:
        img.resize((150, 110)).save(folder / "wide.jpg", quality=92)
        rgba = img.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
        (folder / "sub").mkdir()
        rgba.save(folder / "sub" / "alpha.png")
    (folder / "bad.jpg").write_bytes(b"not an image at all")
    write_video(folder / "clip.mp4", moving_frames(10), fps=10)
    return folder


def media_files(folder: Path) -> dict[str, Path]:
    """The outputs under ``folder`` by their path in it (both keep the input's subfolders)."""
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()
            and not p.relative_to(folder).parts[0].startswith(".") and p.suffix != ".jsonl"}


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as box:
        return [frame.to_ndarray(format="rgb24") for frame in box.decode(video=0)]


def leftovers(folder: Path) -> list[str]:
    """Anything half-written: temporary files, the staging folder."""
    return sorted(str(p) for p in folder.rglob("*") if p.name.endswith(".part") or p.name == STAGING)


def run_job(media: Path, model: Path, out: Path, actor_class: type[StylizeActor] = StylizeActor) -> tuple[dict, list]:
    """The job run from this process (on the fixture's cluster), two files a task so both actors work and a retry
    redoes more than the file that failed: its counts, and every result row."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    rows: list[dict] = []
    summary = stylize_on_ray([str(media)], [model], str(out), SETTINGS, BackendOptions(threads=1),
                             RayOptions(ray=True, actors=2, files_per_task=2), rows.append, actor_class=actor_class)
    return {"stylized": summary.stylized, "skipped": summary.skipped, "failed": len(summary.failures)}, rows


def test_ray_job_matches_local_stylize_and_a_rerun_skips_everything(tiny_onnx, media, cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "ray"
    done = run_cli("stylize", str(media), "--model", str(tiny_onnx), "--out", str(local), *FLAGS)
    assert done.returncode == 1, done.stderr  # the bad file
    started = time.perf_counter()
    job = run_cli("stylize", str(media), "--model", str(tiny_onnx), "--out", str(remote), "--ray-address", cluster,
                  *FLAGS, env=JOIN)
    first_s = time.perf_counter() - started
    assert job.returncode == 1, job.stderr
    assert "7 stylized, 0 skipped (done before), 1 failed" in job.stderr, job.stderr[-3000:]
    assert f"failed: {media / 'bad.jpg'}: not an image Pillow can read" in job.stderr
    report = [json.loads(line) for line in (remote / "failures.jsonl").read_text().splitlines()]
    assert [r["source"] for r in report] == [str(media / "bad.jpg")] and "Pillow" in report[0]["reason"]

    # Same names in the same subfolders, same pixels within one grey level, the video's frames too.
    ours, theirs = media_files(remote), media_files(local)
    assert sorted(ours) == sorted(theirs) == ["astronaut.tiny.jpg", "chelsea.tiny.jpg", "clip.tiny.mp4",
                                              "clip.tiny.mp4.json", "coffee.tiny.jpg", "rocket.tiny.jpg",
                                              "sub/alpha.tiny.png", "wide.tiny.jpg"]
    for name in ours:
        if name.endswith(".json"):
            continue
        if name.endswith(".mp4"):
            a, b = frames(ours[name]), frames(theirs[name])
        else:
            a, b = [np.asarray(Image.open(ours[name]))], [np.asarray(Image.open(theirs[name]))]
        assert len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b, strict=True)), name
        worst = max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b, strict=True))
        assert worst <= 1, f"{name}: {worst} grey levels from local stylize"
    assert Image.open(ours["sub/alpha.tiny.png"]).mode == "RGBA"
    assert leftovers(remote) == []

    # A rerun recomputes nothing: every output and manifest record stays as it was, and it is done sooner.
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in remote.rglob("*") if p.is_file()
              and p.name != "failures.jsonl"}
    started = time.perf_counter()
    again = run_cli("stylize", str(media), "--model", str(tiny_onnx), "--out", str(remote), "--ray-address", cluster,
                    *FLAGS, env=JOIN)
    assert time.perf_counter() - started < first_s
    assert again.returncode == 1 and "0 stylized, 7 skipped (done before), 1 failed" in again.stderr, again.stderr
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before} == before

    # Another option or a changed input is redone; the rest is still skipped.
    quality = run_cli("stylize", str(media), "--model", str(tiny_onnx), "--out", str(remote), "--ray-address",
                      cluster, *FLAGS, "--quality", "80", env=JOIN)
    assert "7 stylized, 0 skipped" in quality.stderr, quality.stderr


def test_a_worker_killed_mid_job_changes_no_output(tiny_onnx, media, cluster, tmp_path):
    calm, disturbed = tmp_path / "calm", tmp_path / "disturbed"
    counts, _ = run_job(media, tiny_onnx, calm)
    assert counts == {"stylized": 7, "skipped": 0, "failed": 1}

    flag = tmp_path / "die-once"
    flag.touch()
    DyingActor.flag = flag
    counts, rows = run_job(media, tiny_onnx, disturbed, actor_class=DyingActor)
    assert not flag.exists(), "no worker was killed"
    assert counts == {"stylized": 7, "skipped": 0, "failed": 1}
    assert [r["name"] for r in rows if r["status"] == "failed"] == [str(media / "bad.jpg")]

    def outputs(folder: Path) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
                and p.suffix not in (".json", ".jsonl")}

    assert outputs(disturbed) == outputs(calm) and len(outputs(calm)) == 7
    assert leftovers(disturbed) == []
    assert not list((disturbed / MANIFEST).rglob("*.attempts"))  # a finished file's count of tries is gone
    records = json.loads((disturbed / MANIFEST / "wide.tiny.jpg.json").read_text())
    assert records["output_bytes"] == (disturbed / "wide.tiny.jpg").stat().st_size


class DyingActor(StylizeActor):
    """Dies like a killed process (no cleanup) on its second image the first time: half the image already written
    to the staging folder, as a kill during the write would leave it."""

    flag: Path
    written = 0

    def write(self, rel: str, data: bytes) -> None:
        self.written += 1
        if self.written == 2:
            try:
                os.unlink(self.flag)  # whoever removes the flag dies; any retry runs undisturbed
            except FileNotFoundError:
                pass
            else:
                self.job.out.staged_file(rel).write_bytes(data[: len(data) // 2])
                os._exit(1)
        super().write(rel, data)


class PoisonActor(StylizeActor):
    """Dies like a decoder crash, on every try at one file."""

    def image(self, row: dict, data: bytes) -> tuple[str, int]:
        if row["name"].endswith("poison.jpg"):
            os._exit(1)
        return super().image(row, data)


def test_a_file_that_kills_its_worker_every_time_is_reported_not_retried_for_ever(tiny_onnx, cluster,
                                                                                   tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("chelsea.jpg", "rocket.jpg", "coffee.jpg"):
        (folder / ("poison.jpg" if name == "coffee.jpg" else name)).write_bytes((DATA / "photos" / name).read_bytes())
    counts, rows = run_job(folder, tiny_onnx, tmp_path / "out", actor_class=PoisonActor)
    assert counts == {"stylized": 2, "skipped": 0, "failed": 1}
    (failed,) = [row for row in rows if row["status"] == "failed"]
    assert failed["name"] == str(folder / "poison.jpg") and "died on each of 4 tries" in failed["reason"]
    assert not list((tmp_path / "out" / MANIFEST).rglob("*.attempts"))  # the next run tries it afresh


class SharingActor(StylizeActor):
    """Starts work only once its sibling is up, is slow enough that one actor cannot finish the job alone, and
    names its process in each image's note."""

    barrier: Path

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        (self.barrier / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(self.barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)

    def image(self, row: dict, data: bytes) -> tuple[str, int]:
        time.sleep(0.2)
        return str(os.getpid()), super().image(row, data)[1]


def test_both_actors_share_the_files(tiny_onnx, media, cluster, tmp_path):
    SharingActor.barrier = tmp_path / "up"
    SharingActor.barrier.mkdir()
    counts, rows = run_job(media, tiny_onnx, tmp_path / "out", actor_class=SharingActor)
    assert counts == {"stylized": 7, "skipped": 0, "failed": 1}
    workers = {row["note"] for row in rows if row["status"] == "done" and row["note"]}
    assert len(workers) == 2, f"one actor stylized every image: {rows}"


class NoActor(StylizeActor):
    """An actor that cannot start: a job that reaches the cluster fails."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("this job was not to start any actor")


def test_a_finished_job_is_found_finished_without_the_cluster(tiny_onnx, cluster, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for name in ("chelsea.jpg", "rocket.jpg"):
        (folder / name).write_bytes((DATA / "photos" / name).read_bytes())
    counts, _ = run_job(folder, tiny_onnx, out)
    assert counts == {"stylized": 2, "skipped": 0, "failed": 0}
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    counts, rows = run_job(folder, tiny_onnx, out, actor_class=NoActor)
    assert counts == {"stylized": 0, "skipped": 2, "failed": 0}
    assert sorted((r["dest"], r["status"]) for r in rows) == [("chelsea.tiny.jpg", "skipped"),
                                                               ("rocket.tiny.jpg", "skipped")]
    assert {p: p.read_bytes() for p in before} == before
    (folder / "coffee.jpg").write_bytes((DATA / "photos" / "coffee.jpg").read_bytes())  # work again: a Ray job
    with pytest.raises(StylecastError, match="this job was not to start any actor"):
        run_job(folder, tiny_onnx, out, actor_class=NoActor)


def test_listing_names_outputs_as_local_stylize_and_keeps_subfolders(tmp_path):
    folder = tmp_path / "in"
    (folder / "a" / "b").mkdir(parents=True)
    for name in ("x.gif", "x.ppm", "x.jpg", "notes.txt", "a/y.webp", "a/b/z.mov"):
        (folder / name).touch()
    (folder / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    out = prepare_output(str(tmp_path / "out"))
    (root,) = plan_roots([str(folder)], out)
    rows = list(list_folder(0, root, "tiny"))
    assert [(r["name"], r["dest"], r["video"]) for r in rows] == [
        (f"{folder}/gone.jpg", "gone.tiny.jpg", False),  # a broken link is listed, so it is reported
        (f"{folder}/x.gif", "x.tiny.png", False), (f"{folder}/x.jpg", "x.tiny.jpg", False),
        (f"{folder}/x.ppm", "x.tiny-2.png", False), (f"{folder}/a/y.webp", "a/y.tiny.webp", False),
        (f"{folder}/a/b/z.mov", "a/b/z.tiny.mov", True)]


def test_two_inputs_keep_their_folder_names_and_bad_layouts_are_refused(tmp_path):
    (tmp_path / "one" / "photos").mkdir(parents=True)
    (tmp_path / "two" / "photos").mkdir(parents=True)
    (tmp_path / "more").mkdir()
    out = prepare_output(str(tmp_path / "out"))
    roots = plan_roots([str(tmp_path / "one" / "photos"), str(tmp_path / "more"), str(tmp_path / "lone.jpg")], out)
    assert [(r.prefix, r.folder) for r in roots] == [("photos", True), ("more", True), ("", False)]
    with pytest.raises(StylecastError, match="two input folders are named 'photos'"):
        plan_roots([str(tmp_path / "one" / "photos"), str(tmp_path / "two" / "photos")], out)
    with pytest.raises(StylecastError, match="is inside the input folder"):
        plan_roots([str(tmp_path)], out)
    with pytest.raises(StylecastError, match="not patterns"):
        plan_roots([str(tmp_path / "*.jpg")], out)
    with pytest.raises(StylecastError, match="writes into a folder"):
        prepare_output(str(tmp_path / "one.png"))
    with pytest.raises(StylecastError, match="no filesystem for this URI"):
        resolve("nosuchscheme://bucket/photos")


def test_an_output_is_put_in_place_whole_and_its_tries_are_counted(tmp_path):
    out = Output(*resolve(str(tmp_path)), str(tmp_path))
    out.put_bytes("a/b.png", b"payload")
    assert (tmp_path / "a" / "b.png").read_bytes() == b"payload" and out.size("a/b.png") == 7
    assert out.size("a/missing.png") is None and out.record("a/b.png") is None
    made = {"input_sha256": "x", "model_sha256": "y", "options": {"quality": 95}}
    assert out.made("a/b.png", made) is None
    out.put_bytes(f"{MANIFEST}/a/b.png.json", json.dumps({**made, "output_bytes": 7, "run": "r1"}).encode())
    assert out.made("a/b.png", made)["run"] == "r1"
    assert out.made("a/b.png", {**made, "options": {"quality": 80}}) is None
    out.put_bytes("a/b.png", b"another size: not what the record says")
    assert out.made("a/b.png", made) is None
    assert [out.attempt("a/b.png") for _ in range(3)] == [1, 2, 3]
    out.forget("a/b.png")
    assert out.attempt("a/b.png") == 1
    out.sweep()
    assert leftovers(tmp_path) == []


def test_the_pool_takes_the_cluster_s_cpus_or_shares_its_gpus():
    cluster = {"CPU": 16.0, "GPU": 4.0}
    assert plan_pool(cluster, gpu=False, threads=1, asked=None) == Pool(16, 1, None)
    assert plan_pool(cluster, gpu=False, threads=4, asked=None) == Pool(4, 4, None)
    assert plan_pool(cluster, gpu=True, threads=1, asked=None) == Pool(4, 1, 1.0)
    assert plan_pool(cluster, gpu=True, threads=1, asked=16) == Pool(16, 1, 0.25)  # four actors a GPU
    assert plan_pool(cluster, gpu=True, threads=1, asked=2) == Pool(2, 1, 1.0)
    with pytest.raises(StylecastError, match="the Ray cluster has none"):
        plan_pool({"CPU": 8.0}, gpu=True, threads=1, asked=None)
    assert runs_on_gpu([Path("m.engine")], BackendOptions())
    assert runs_on_gpu([Path("m.onnx")], BackendOptions(provider=["CUDAExecutionProvider"]))
    assert not runs_on_gpu([Path("m.onnx")], BackendOptions(provider=["CPUExecutionProvider"]))
