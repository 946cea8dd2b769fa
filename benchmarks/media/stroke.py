"""Stroke size, measured: crops of a phone-sized photo painted at each ``--stroke``, and at 1080p the latency of each
stroke size against 1 and how sharp the photo's edges stay.

    python -m stylecast.benchmarks.media.stroke --model artifacts/wave/wave.fp32.onnx [--model OTHER.onnx] \
        --photo PHOTO [--size 4032x3024] [--frame 1920x1080] [--rounds 5]

The photo is centre-cropped to each size's aspect and resized to it. The gallery shows the same full-resolution
crop of the phone-sized photo, the photo then each stroke size, one row per model. At the frame size, each stroke
size runs in interleaved rounds (the median, and the ratio to stroke 1 taken round by round), and the gradient
energy of its output along the photo's strongest edges (the top tenth of the photo's Sobel magnitude) is compared
with stroke 1's; plain bicubic upscaling of the same painting is the baseline the guided upsampling must beat.
Writes ``stroke.json``, ``stroke.md`` and ``gallery.jpg`` to ``--out`` (benchmarks/results/stroke by
`make bench-stroke`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from stylecast.runtime.errors import import_optional
from stylecast.runtime.images import atomic_write, encode_image, fit
from stylecast.runtime.machine import describe_class, fingerprint
from stylecast.runtime.media import run_image
from stylecast.runtime.options import parse_size
from stylecast.runtime.stroke import MISSING
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.tiling import DEFAULT_OVERLAP

STROKES = (1.0, 0.5, 0.25)
TARGETS = {"time_ratio_0.5": 0.35, "edge_ratio_min": 0.9}
EDGE_SHARE = 0.1  # the strongest tenth of the photo's gradient magnitude counts as its edges
CROP = 384  # the gallery's crops, px at full resolution
GALLERY_BYTES = 400_000
DEFAULT_MODEL = Path("artifacts/wave/wave.fp32.onnx")


def _cv2() -> ModuleType:
    return import_optional("cv2", f"bench-stroke {MISSING}")


def sobel(rgb: np.ndarray) -> np.ndarray:
    """The gradient magnitude of ``rgb``'s luminance."""
    cv2 = _cv2()
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def edge_mask(photo: np.ndarray, share: float = EDGE_SHARE) -> np.ndarray:
    """Where ``photo`` has its strongest edges: the top ``share`` of its gradient magnitude."""
    magnitude = sobel(photo)
    return magnitude >= np.quantile(magnitude, 1.0 - share)


def edge_energy(output: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared gradient magnitude of ``output`` over ``mask``: how sharp it is along the photo's edges."""
    return float(np.mean(sobel(output)[mask] ** 2))


def bicubic(stylizer: Stylizer, photo: np.ndarray, stroke: float) -> np.ndarray:
    """The baseline: the net on ``photo`` downscaled by ``stroke`` (as `--stroke` does), upscaled bicubically."""
    cv2 = _cv2()
    height, width = photo.shape[:2]
    small = cv2.resize(photo, (max(1, round(width * stroke)), max(1, round(height * stroke))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(stylizer(small), (width, height), interpolation=cv2.INTER_CUBIC)


def paint(stylizer: Stylizer, photo: np.ndarray, stroke: float) -> np.ndarray:
    """What `stylecast stylize --stroke` paints (tiled where that size needs it)."""
    return run_image(stylizer, photo, None, DEFAULT_OVERLAP, stroke=stroke)


def latency(stylizer: Stylizer, frame: np.ndarray, rounds: int) -> list[dict]:
    """Each stroke size on ``frame`` in ``rounds`` interleaved rounds: the median seconds, the median of the
    round-by-round ratio to stroke 1, and the edge energy along the photo's edges against stroke 1's (and plain
    bicubic upscaling's)."""
    for stroke in STROKES:  # sessions and shapes set up before timing
        paint(stylizer, frame, stroke)
    seconds: dict[float, list[float]] = {stroke: [] for stroke in STROKES}
    outputs: dict[float, np.ndarray] = {}
    for _ in range(rounds):
        for stroke in STROKES:
            start = time.perf_counter()
            outputs[stroke] = paint(stylizer, frame, stroke)
            seconds[stroke].append(time.perf_counter() - start)
    mask = edge_mask(frame)
    reference = edge_energy(outputs[1.0], mask)
    rows = []
    for stroke in STROKES:
        rows.append({"stroke": stroke, "seconds": round(float(np.median(seconds[stroke])), 3),
                     "time_ratio": round(float(np.median([a / b for a, b in zip(seconds[stroke], seconds[1.0],
                                                                                 strict=True)])), 3),
                     "edge_ratio": round(edge_energy(outputs[stroke], mask) / reference, 3),
                     "bicubic_edge_ratio": round(edge_energy(bicubic(stylizer, frame, stroke), mask) / reference, 3)})
        print(rows[-1], flush=True)
    return rows


def centre_crop(rgb: np.ndarray, side: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return rgb[top:top + side, left:left + side]


def gallery(rows: list[list[np.ndarray]], dest: Path, limit: int = GALLERY_BYTES) -> int:
    """The crops as a grid JPEG under ``limit`` bytes (the quality lowered until it fits); its size."""
    sheet = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
    for quality in range(85, 20, -5):
        data = encode_image(sheet, None, "JPEG", quality)
        if len(data) <= limit:
            break
    atomic_write(dest, lambda tmp: tmp.write_bytes(data))
    return len(data)


def markdown(result: dict) -> str:
    lines = [f"# Stroke size ({result['frame']} frames, {result['photo']})", "",
             f"Machine: {result['machine']}. Targets: time at stroke 0.5 ≤ {TARGETS['time_ratio_0.5']}× stroke 1's; "
             f"gradient energy along the photo's edges (top {EDGE_SHARE:.0%} Sobel magnitude) at least "
             f"{TARGETS['edge_ratio_min']}× stroke 1's.", "",
             "| model | stroke | seconds | time vs stroke 1 | edge energy vs stroke 1 | plain bicubic |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {row['model']} | {row['stroke']} | {row['seconds']} | {row['time_ratio']} | {row['edge_ratio']} "
              f"| {row['bicubic_edge_ratio']} |" for row in result["latency"]]
    lines += ["", f"![the photo, then strokes {', '.join(map(str, STROKES))}](gallery.jpg)", "",
              f"*A {CROP} px crop of the {result['size']} photo at full resolution: the photo, then stroke "
              f"{', '.join(map(str, STROKES))}; one row per model ({', '.join(result['models'])}).*"]
    return "\n".join(lines) + "\n"


def default_models() -> list[Path]:
    """The wave export and one other exported style, where there is one."""
    others = [path for path in sorted(Path("artifacts").glob("*/*.fp32.onnx")) if path != DEFAULT_MODEL]
    return [DEFAULT_MODEL, *others[:1]]


def run(models: list[Path], photo: Path, size: str, frame_size: str, rounds: int, out: Path) -> dict:
    """The gallery at ``size`` and the latency rows at ``frame_size`` for each model; writes the results."""
    source = np.asarray(Image.open(photo).convert("RGB"))
    phone, video = parse_size(size, "--size"), parse_size(frame_size, "--frame")
    big, frame = fit(source, phone.height, phone.width), fit(source, video.height, video.width)
    crops, rows = [], []
    for model in models:
        with Stylizer(model) as stylizer:
            crops.append([centre_crop(big, CROP)] + [centre_crop(paint(stylizer, big, stroke), CROP)
                                                      for stroke in STROKES])
            rows += [{"model": model.name, **row} for row in latency(stylizer, frame, rounds)]
    out.mkdir(parents=True, exist_ok=True)
    result = {"models": [m.name for m in models], "photo": photo.name, "size": phone.label, "frame": video.label,
              "rounds": rounds, "machine": describe_class(fingerprint()), "targets": TARGETS, "latency": rows,
              "gallery_bytes": gallery(crops, out / "gallery.jpg")}
    atomic_write(out / "stroke.json", lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
    atomic_write(out / "stroke.md", lambda tmp: tmp.write_text(markdown(result)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append",
                        help="exported .onnx model; repeat for more rows (default: wave and one other export)")
    parser.add_argument("--photo", type=Path, default=Path("benchmarks/photos/rocket.jpg"))
    parser.add_argument("--size", default="4032x3024", help="the phone-sized photo's WxH (the gallery)")
    parser.add_argument("--frame", default="1080p", help="the frame size timed (WxH or 720p/1080p/4k)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stroke"))
    args = parser.parse_args()
    result = run(args.model or default_models(), args.photo, args.size, args.frame, args.rounds, args.out)
    for row in result["latency"]:
        if row["stroke"] == 0.5:
            print(f"{row['model']}: time(0.5)/time(1) {row['time_ratio']} (target ≤ {TARGETS['time_ratio_0.5']}), "
                  f"edge energy {row['edge_ratio']} of stroke 1's (target ≥ {TARGETS['edge_ratio_min']})")
    print(f"wrote {args.out / 'stroke.md'}")


if __name__ == "__main__":
    main()
