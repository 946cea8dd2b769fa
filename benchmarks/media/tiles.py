"""Tiled inference, measured: agreement with whole-image inference, and peak memory on an 8K photo.

    python -m stylecast.benchmarks.media.tiles --model artifacts/wave/wave.fp32.onnx --photo PHOTO \
        [--huge 8000x6000,4000x3000]

Writes artifacts/bench/tiles.json. Agreement is measured where the whole image still fits (long side
``--compare-side``); peak RSS is that of a real `stylecast stylize` process on an upscaled photo.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from stylecast.benchmarks.media import harness
from stylecast.benchmarks.media.harness import stylecast
from stylecast.runtime.images import load_image, resize_to
from stylecast.runtime.metrics import psnr, ssim
from stylecast.runtime.options import parse_size
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.tiling import stylize_tiled

SETTINGS = [(256, 32), (512, 64), (512, 128), (768, 192)]


def agreement(model: Path, photo: Path, side: int) -> list[dict]:
    rgb = load_image(photo).rgb
    rgb = resize_to(rgb, side, round(side * rgb.shape[0] / rgb.shape[1]))
    stylizer = Stylizer(model)
    whole = stylizer(rgb)
    rows = []
    for tile, overlap in SETTINGS:
        tiled = stylize_tiled(stylizer, rgb, tile, overlap)
        rows.append({"size": f"{rgb.shape[1]}x{rgb.shape[0]}", "tile": tile, "overlap": overlap,
                     "psnr_db": round(psnr(whole, tiled), 2), "ssim": round(ssim(whole, tiled), 4)})
        print(rows[-1], flush=True)
    return rows


def peak_rss(model: Path, photo: Path, size: tuple[int, int], work: Path) -> dict:
    """Upscale ``photo`` to ``size``, stylize it in a child `stylecast` and read the child's peak RSS."""
    big = work / f"huge-{size[0]}x{size[1]}.jpg"
    if not big.is_file():
        Image.open(photo).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(big, quality=92)
    seconds, rss_mib, command = stylecast("stylize", str(big), "--model", str(model), "--out", str(work / "huge-out"),
                                          "--tile", "512", "--overlap", "64")
    row = {"size": f"{size[0]}x{size[1]}", "tile": 512, "overlap": 64, "peak_rss_mib": round(rss_mib),
           "image_buffers_mib": round(size[0] * size[1] * 3 * 2 / 2**20), "seconds": round(seconds, 1),
           "command": command}
    print(row, flush=True)
    return row


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--compare-side", type=int, default=1024, help="long side for the agreement check (0 = skip)")
    parser.add_argument("--huge", default="8000x6000", help="comma-separated WxH for peak-memory runs ('' = skip)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"model": str(args.model), "photo": str(args.photo), "agreement": [], "peak_memory": []}
    if args.compare_side:
        result["agreement"] = agreement(args.model, args.photo, args.compare_side)
    for size in filter(None, args.huge.lower().split(",")):
        width, height = parse_size(size, "--huge")
        result["peak_memory"].append(peak_rss(args.model, args.photo, (width, height), args.out))
    (args.out / "tiles.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'tiles.json'}")


if __name__ == "__main__":
    main()
