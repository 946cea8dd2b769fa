"""Video, measured: a long synthetic pan and a still-camera clip (with audio) through `stylecast stylize`,
flicker plain, with ``--temporal-blend`` and with ``--input-hold``, and backend frames per second at several batch
sizes on ONNX Runtime CPU.

    python -m stylecast.benchmarks.media.video --model artifacts/wave/wave.fp32.onnx --photo PHOTO

Writes artifacts/bench/video.json (the sidecar reports of each run, plus the batch timings).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stylecast.benchmarks.media import harness
from stylecast.benchmarks.media.harness import stylecast
from stylecast.benchmarks.media.synthetic import panning_frames, still_frames, write_video
from stylecast.runtime.artifacts import sidecar_path
from stylecast.runtime.images import load_image, resize_to
from stylecast.runtime.options import parse_size
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.timing import timed_ms


def stylize(model: Path, source: Path, dest: Path, *extra: str) -> dict:
    _, _, command = stylecast("stylize", str(source), "--model", str(model), "--out", str(dest), *extra)
    report = json.loads(sidecar_path(dest).read_text())
    report["command"] = command
    shown = ("frames", "fps", "audio", "processing_fps", "backend_busy", "temporal_blend", "input_hold", "flicker")
    print({k: report[k] for k in shown}, flush=True)
    return report


def batch_speed(model: Path, frames: list[np.ndarray], sizes: list[int], rounds: int = 2) -> list[dict]:
    """Frames per second of the backend alone at each batch size (after one warm-up call). The sizes take turns
    over several rounds, so a change in machine load does not favour one of them."""
    stylizer = Stylizer(model)
    rows = []
    for round_ in range(rounds):
        for size in sizes:
            stylizer.stylize_batch(frames[:size])
            _, ms = timed_ms(lambda size=size: [stylizer.stylize_batch(frames[start:start + size])
                                                for start in range(0, len(frames) - size + 1, size)])
            done = (len(frames) // size) * size
            rows.append({"round": round_, "batch": size, "fps": round(done / (ms / 1e3), 2)})
            print(rows[-1], flush=True)
    return rows


def compare_mitigations(model: Path, source: Path, out: Path, blend: float, hold: float) -> list[dict]:
    """The same clip plain, with --temporal-blend and with --input-hold. Each mitigation's ``departure`` is the
    mean absolute difference of its frames from the plain run's (grey levels): what it costs where things move."""
    plain = out / f"{source.stem}.stylized.mp4"
    runs = [stylize(model, source, plain)]
    for name, option, value in (("blended", "--temporal-blend", blend), ("held", "--input-hold", hold)):
        dest = out / f"{source.stem}.{name}.mp4"
        runs.append({**stylize(model, source, dest, option, str(value)), "departure": departure(plain, dest)})
    return runs


def departure(reference: Path, other: Path) -> float:
    """Mean absolute difference between two videos' frames, frame by frame."""
    import av

    with av.open(str(reference)) as a, av.open(str(other)) as b:
        gaps = [np.abs(x.to_ndarray(format="rgb24").astype(np.int16) - y.to_ndarray(format="rgb24")).mean()
                for x, y in zip(a.decode(video=0), b.decode(video=0), strict=True)]
    return round(float(np.mean(gaps)), 3)


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the panning clip")
    parser.add_argument("--still-seconds", type=float, default=20.0, help="length of the still-camera clip")
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--size", default="256x144", help="frame WxH")
    parser.add_argument("--blend", type=float, default=0.5)
    parser.add_argument("--hold", type=float, default=3.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    width, height = parse_size(args.size, "--size")
    original = load_image(args.photo).rgb
    photo = resize_to(original, width * 2, round(width * 2 * original.shape[0] / original.shape[1]))
    pan, still = round(args.seconds * args.fps), round(args.still_seconds * args.fps)
    clips = {"pan": (pan, lambda: panning_frames(photo, pan, height, width)),  # the camera sweeps across the photo
             "still": (still, lambda: still_frames(original, still, height, width))}  # only sensor noise moves
    result = {"runs": {}}
    for name, (count, frames) in clips.items():
        source = args.out / f"{name}-{width}x{height}-{count}f.mp4"
        if not source.is_file():
            write_video(source, frames(), fps=args.fps)
        result["runs"][name] = compare_mitigations(args.model, source, args.out, args.blend, args.hold)
    sample = list(panning_frames(photo, 24, height, width))
    result["backend_fps_by_batch"] = batch_speed(args.model, sample, [1, 2, 4, 8])
    (args.out / "video.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'video.json'}")


if __name__ == "__main__":
    main()
