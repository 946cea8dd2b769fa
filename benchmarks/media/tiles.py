"""Tiled inference, measured: agreement with whole-image inference on a phone-sized photo for each way of
normalising tiles and each precision, crops of a smooth sky, and the peak memory of `stylecast stylize`.

    python -m stylecast.benchmarks.media.tiles --model artifacts/wave/wave.fp32.onnx --photo PHOTO \
        [--size 4032x3024] [--huge 8064x6048]

The photo is centre-cropped to the size's aspect and upscaled to it (a phone's 12 MP by default), so wide smooth
areas show what per-tile normalisation does to a sky. Every precision exported beside ``--model`` is compared with
its own whole-image run. Writes ``tiles.json``, ``tiles.md`` and the crops to ``--out``
(benchmarks/results/tiles by `make bench-tiles`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from stylecast.benchmarks.media import harness
from stylecast.benchmarks.media.harness import stylecast
from stylecast.benchmarks.report import readme_parts, splice_block
from stylecast.runtime.images import atomic_write, fit, save_image
from stylecast.runtime.machine import describe_class, fingerprint
from stylecast.runtime.media import run_image
from stylecast.runtime.options import parse_size
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_NORM, TILE_NORMS

BLOCK = 448  # the side of the squares whose mean luminance shifts are compared
TARGETS = {"mad": 3.0, "block_std": 1.5, "time_ratio": 1.2}
CROPS = ("tile", "thumbnail", "mosaic (the default)", "whole image")
CAPTION = ("*The smoothest 768 px square at full size, left to right: each tile normalised by itself, by a "
           "thumbnail's statistics, by statistics of full-resolution patches (mosaic, the default), and the whole "
           "image in one pass.*")


def block_shifts(a: np.ndarray, b: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Mean luminance of ``a`` minus that of ``b`` over each whole ``block`` px square."""
    ya, yb = a.astype(np.float64).mean(axis=2), b.astype(np.float64).mean(axis=2)
    height, width = ya.shape
    return np.array([ya[y:y + block, x:x + block].mean() - yb[y:y + block, x:x + block].mean()
                     for y in range(0, height - block + 1, block) for x in range(0, width - block + 1, block)])


def tiled(stylizer: Stylizer, rgb: np.ndarray, norm: str) -> np.ndarray:
    """What `stylecast stylize` does with ``norm`` above the auto-tiling side, each norm with its default tiles."""
    return run_image(stylizer, rgb, None, DEFAULT_OVERLAP, norm=norm)


def smoothest_crop(rgb: np.ndarray, side: int) -> tuple[int, int]:
    """The top-left corner of the ``side`` px square with the least detail (a sky), where seams show most."""
    grey = rgb.astype(np.float32).mean(axis=2)
    detail = np.abs(np.diff(grey, axis=0))[:, :-1] + np.abs(np.diff(grey, axis=1))[:-1]
    corners = [(y, x) for y in range(0, grey.shape[0] - side, side // 2) for x in range(0, grey.shape[1] - side, side // 2)]
    return min(corners, key=lambda c: detail[c[0]:c[0] + side, c[1]:c[1] + side].mean())


def agreement(model: Path, rgb: np.ndarray, out: Path, rounds: int = 2) -> list[dict]:
    """Each precision beside ``model`` x each tile normalisation against the precision's own whole-image run; the
    tiled runs' seconds are the median over ``rounds`` interleaved rounds, and their ratio to per-tile
    normalisation (the tiling that ran before whole-image statistics) is taken round by round."""
    rows = []
    for path in sorted(model.parent.glob(f"{model.name.split('.')[0]}.*.onnx")):
        stylizer = Stylizer(path)
        whole = stylizer(rgb)
        tiled(stylizer, rgb[:1024, :1024], DEFAULT_TILE_NORM)  # sessions and shapes set up before timing
        seconds: dict[str, list[float]] = {norm: [] for norm in TILE_NORMS}
        outputs = {}
        for _ in range(rounds):
            for norm in TILE_NORMS:
                start = time.perf_counter()
                outputs[norm] = tiled(stylizer, rgb, norm)
                seconds[norm].append(time.perf_counter() - start)
        for norm, result in outputs.items():
            shifts = block_shifts(result, whole)
            rows.append({"model": path.name, "precision": stylizer.precision, "tile_norm": norm,
                         "mad": round(float(np.abs(result.astype(int) - whole.astype(int)).mean()), 2),
                         "block_std": round(float(shifts.std()), 2), "block_min": round(float(shifts.min()), 1),
                         "block_max": round(float(shifts.max()), 1),
                         "seconds": round(float(np.median(seconds[norm])), 1),
                         "time_ratio": round(float(np.median([a / b for a, b in zip(seconds[norm], seconds["tile"],
                                                                                    strict=True)])), 3)})
            print(rows[-1], flush=True)
        if stylizer.precision == "fp32":
            crops(whole, outputs, out)
        stylizer.close()
    return rows


def crops(whole: np.ndarray, outputs: dict[str, np.ndarray], out: Path, side: int = 768) -> None:
    """The smoothest square at full size from the whole-image run and each tiled one, side by side, and each
    alone (what the docs show)."""
    y, x = smoothest_crop(whole, side)
    parts = {"whole": whole, **outputs}
    for name, image in parts.items():
        save_image(out / f"crop-{name}.jpg", image[y:y + side, x:x + side], quality=85)
    strip = np.concatenate([parts[name][y:y + side, x:x + side] for name in TILE_NORMS[::-1] + ("whole",)], axis=1)
    save_image(out / "crops.jpg", strip, quality=85)


def peak_rss(model: Path, rgb: np.ndarray, size: tuple[int, int], work: Path, norm: str) -> dict:
    """Stylize ``rgb`` upscaled to ``size`` in a child `stylecast stylize` with ``--tile-norm norm``; its peak RSS."""
    big = work / f"huge-{size[0]}x{size[1]}.jpg"
    work.mkdir(parents=True, exist_ok=True)
    if not big.is_file():
        Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC).save(big, quality=92)
    seconds, rss_mib, command = stylecast("stylize", str(big), "--model", str(model), "--out", str(work / "huge-out"),
                                          "--tile-norm", norm)
    row = {"size": f"{size[0]}x{size[1]}", "tile_norm": norm, "peak_rss_mib": round(rss_mib),
           "image_buffers_mib": round(size[0] * size[1] * 3 * 2 / 2**20), "seconds": round(seconds, 1),
           "command": command}
    print(row, flush=True)
    return row


def markdown(result: dict) -> str:
    lines = [f"# Tiles against the whole image ({result['size']}, {result['photo']})", "",
             f"Machine: {result['machine']}. Targets: mean absolute difference ≤ {TARGETS['mad']}, standard "
             f"deviation of {BLOCK} px block luminance shifts ≤ {TARGETS['block_std']}, time ≤ "
             f"{TARGETS['time_ratio']}× per-tile normalisation.", "",
             "| model | tile norm | mean abs diff | block shift std | block shift range | seconds | time vs tile |",
             "|---|---|---:|---:|---|---:|---:|"]
    lines += [f"| {r['model']} | {r['tile_norm']} | {r['mad']} | {r['block_std']} | {r['block_min']} … {r['block_max']} "
              f"| {r['seconds']} | {r['time_ratio']} |" for r in result["agreement"]]
    lines += ["", "Peak RSS of `stylecast stylize` (fp32):", "", "| image | tile norm | peak RSS (MiB) | input + "
              "output buffers (MiB) | seconds |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['size']} | {r['tile_norm']} | {r['peak_rss_mib']} | {r['image_buffers_mib']} | {r['seconds']} |"
              for r in result["peak_memory"]]
    lines += ["", f"![{', '.join(CROPS)}](crops.jpg)", "", CAPTION]
    return "\n".join(lines) + "\n"


def summary(result: dict, out: Path) -> str:
    """The docs' short table: the fp32 export's rows, the peak memory, and the crops."""
    rows = [r for r in result["agreement"] if r["precision"] == "fp32"]
    lines = [f"On {result['size']} ({result['photo']} upscaled), {Path(result['model']).name} against its "
             f"whole-image run, {result['machine']}:", "",
             "| `--tile-norm` | mean abs diff | 448 px block shift std | time vs `tile` |", "|---|---:|---:|---:|"]
    lines += [f"| {r['tile_norm']} | {r['mad']} | {r['block_std']} | {r['time_ratio']}× |" for r in rows]
    memory = ", ".join(f"{r['size']} `{r['tile_norm']}`: {r['peak_rss_mib']} MiB" for r in result["peak_memory"])
    lines += ["", f"Peak RSS of `stylecast stylize`: {memory}.", "",
              f"![{', '.join(CROPS)}]({(out / 'crops.jpg').as_posix()})", "", CAPTION]
    return "\n".join(lines)


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--size", default="4032x3024", help="the phone-sized photo's WxH")
    parser.add_argument("--huge", default="8064x6048", help="comma-separated WxH for peak-memory runs ('' = skip)")
    parser.add_argument("--docs", type=Path, help="a page whose tiles markers get the summary (docs/video.md)")
    parser.set_defaults(out=Path("benchmarks/results/tiles"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.docs:
        readme_parts(args.docs, "tiles")  # checked before the long run
    size = parse_size(args.size, "--size")
    source = np.asarray(Image.open(args.photo).convert("RGB"))
    rgb = fit(source, size.height, size.width)
    # Memory first: a child's peak RSS starts from this process's at the fork, so it is measured while this one
    # is still small (the whole-image runs below take gigabytes).
    runs = [(size.label, norm) for norm in TILE_NORMS] + [(text, TILE_NORMS[0]) for text in
                                                           filter(None, args.huge.lower().split(","))]
    memory = [peak_rss(args.model, rgb, (parse_size(text, "--huge").width, parse_size(text, "--huge").height),
                       Path("artifacts/bench"), norm) for text, norm in runs]
    result = {"model": str(args.model), "photo": args.photo.name, "size": size.label,
              "machine": describe_class(fingerprint()), "targets": TARGETS,
              "agreement": agreement(args.model, rgb, args.out), "peak_memory": memory}
    atomic_write(args.out / "tiles.json", lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
    atomic_write(args.out / "tiles.md", lambda tmp: tmp.write_text(markdown(result)))
    if args.docs:
        splice_block(args.docs, "tiles", summary(result, args.out))
    print(f"wrote {args.out / 'tiles.md'}")


if __name__ == "__main__":
    main()
