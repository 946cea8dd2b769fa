"""One exported ONNX per precision: fp32 straight from PyTorch, fp16 and int8 derived from that fp32 graph.

Imported without torch or onnx (`stylecast export --help` lists the int8 options of :class:`Int8Settings`): the
converters are imported where a graph is made."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import INT8_METHODS
from stylecast.runtime.params import option

if TYPE_CHECKING:
    import onnx

    from stylecast.train.checkpoint import LoadedModel


def parse_count(text: str) -> int | None:
    """'auto' -> None (measure it), '3' -> 3."""
    if text.strip().lower() == "auto":
        return None
    if not text.strip().isdigit():
        raise StylecastError(f"--int8-fp32-convs {text}: give auto or a count such as 4")
    return int(text)


# The selection photos' PSNR the fp32-conv search stops at: the 35 dB floor plus a margin, as on the wave model the
# 4 selection photos read 3 dB above the parity photos.
TARGET_DB = 40.0


@dataclass(frozen=True)
class Int8Settings:
    """Where int8 scales come from. ``method='auto'`` tries each and keeps the best measured one."""

    calibration_images: Path | None = option(
        None, "int8: real photos to calibrate on (parity photos are excluded by content).")
    # ONNX Runtime's calibrators keep every intermediate tensor of every photo in memory until the end, so memory
    # grows with count x pixels: 32 photos at 512x512 passed 15 GB resident and were killed; 16 at 256x256 fit.
    count: int = option(16, "int8: how many photos calibrate.", "--calibration-count")
    # The deployment resolution the scales are calibrated at, (height, width); the command line gives WIDTHxHEIGHT.
    size: tuple[int, int] = option((256, 256), cli=False)
    method: str = option("auto", "int8 calibration: auto (measure minmax, entropy, percentile; keep the best), or "
                         "one of them.", "--int8-method")
    selection: int = option(4, "Further photos, not used for calibration, that pick the method and the fp32 convs.",
                            cli=False)
    # Leading convs kept in fp32 (the last conv always is); None = the fewest whose selection PSNR reaches target_db.
    fp32_leading: int | None = option(
        None, f"int8: leading convs kept fp32 (the last conv always is): auto (fewest reaching {TARGET_DB:g} dB on "
              "selection photos) or a count.",
        "--int8-fp32-convs", parser=parse_count, metavar="<str>", show_default="auto")
    target_db: float = option(TARGET_DB, cli=False)

    def __post_init__(self) -> None:
        if self.method != "auto" and self.method not in INT8_METHODS:
            raise StylecastError(f"--int8-method {self.method}: choose auto or one of {list(INT8_METHODS)}")
        if self.count < 1 or self.selection < 0:
            raise StylecastError("--calibration-count must be at least 1")
        if self.fp32_leading is not None and self.fp32_leading < 0:
            raise StylecastError(f"--int8-fp32-convs {self.fp32_leading}: give auto or a count of 0 or more")

    def methods(self) -> list[str]:
        from stylecast.export.to_int8 import METHODS

        return sorted(METHODS) if self.method == "auto" else [self.method]


def conversion_settings(precision: str, int8: Int8Settings, held_out: frozenset[str] = frozenset()) -> str:
    """What, besides the checkpoint, decides the graph: stored in its metadata to tell when it is stale.

    int8 is keyed on the content of the photos it calibrates and selects on (not on the folder's name, which
    stays the same when its photos change)."""
    if precision == "fp16":
        from stylecast.export import to_fp16

        return json.dumps({"fp32_ops": to_fp16.FP32_OPS})
    if precision == "int8":
        from stylecast.export import to_int8

        photos = None
        if int8.calibration_images is not None:
            files = to_int8.calibration_files(int8.calibration_images, int8.count + int8.selection, set(held_out))
            photos = to_int8.photos_digest(files)
        return json.dumps({"calibration_photos_sha256": photos, "count": int8.count, "size": list(int8.size),
                           "method": int8.method, "selection": int8.selection, "fp32_leading": int8.fp32_leading,
                           "target_db": int8.target_db, "quantizer": to_int8.QUANTIZER_OPTIONS})
    return ""


def _stamp_and_save(model: onnx.ModelProto, source: LoadedModel, precision: str, conversion: str,
                    dest: Path, made: dict | None = None) -> None:
    """``conversion``: the settings (the staleness key); ``made``: what they led to (the int8 search's choices),
    kept in the file so a later export that reuses it can still report how it was made."""
    from stylecast.export import to_onnx

    extra = {"made": json.dumps(made, sort_keys=True)} if made else {}
    to_onnx.set_metadata(model, {**to_onnx.export_metadata(source, precision), "conversion": conversion, **extra})
    to_onnx.save_onnx(model, dest)


def _int8(source: LoadedModel, base: Path, dest: Path, scratch: Path, settings: Int8Settings,
          held_out: set[str], sizes: tuple[tuple[int, int], ...], log: Callable[[str], None]) -> dict:
    """Calibrate with each method, keeping 0, 1, 2... leading convs in fp32, until the selection photos
    reach the target: the most int8 compute that still looks like the fp32 model, chosen by measurement."""
    import onnx

    from stylecast.export import parity, to_int8
    from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from stylecast.runtime.images import load_image

    if settings.calibration_images is None:
        raise StylecastError("int8 needs real photos to calibrate on: pass --calibration-images DIR "
                             "(disjoint from --parity-images)")
    files = to_int8.calibration_files(settings.calibration_images, settings.count + settings.selection, held_out)
    calibration, selection = files[:settings.count], files[settings.count:]
    methods = settings.methods()
    searching = settings.fp32_leading is None
    if (len(methods) > 1 or searching) and not selection:
        raise StylecastError(f"{settings.calibration_images}: too few photos to measure the int8 choices; "
                             "add photos, or pass --int8-method and --int8-fp32-convs")
    convs = to_int8.conv_names(base)
    # At most half the convs stay fp32: past that int8 buys little, and the export's floor check decides.
    leading_counts = range(len(convs) // 2 + 1) if searching else [settings.fp32_leading]
    reference = parity.Reference(source.model, [load_image(p).rgb for p in selection])
    scores: dict[int, dict[str, float]] = {}
    for leading in leading_counts:
        keep = to_int8.fp32_convs(convs, leading)
        for method in methods:
            candidate = scratch / f"int8.{leading}.{method}.onnx"
            log(f"int8: quantizing ({method}, {len(keep)} of {len(convs)} convs fp32; scales from {len(calibration)} "
                f"photos at {settings.size[0]}x{settings.size[1]}, calibrated once per method)")
            to_int8.quantize_int8(base, candidate, calibration, settings.size, method, keep,
                                  scratch / f"calibration.{method}.json")
            if len(methods) > 1 or searching:
                backend = OnnxRuntimeBackend(candidate, providers=["CPUExecutionProvider"])
                score = min(r.psnr_min for r in parity.measure(reference, backend, sizes))
                scores.setdefault(leading, {})[method] = round(score, 2)
                log(f"int8: {method} with {leading} leading fp32 convs gives {score:.1f} dB on {len(selection)} "
                    "selection photos")
        if not searching or max(scores[leading].values()) >= settings.target_db:
            break
    if searching and max(scores[leading].values()) < settings.target_db:  # none reached it: keep the best seen
        leading = max(scores, key=lambda k: max(scores[k].values()))
    best = max(scores[leading], key=scores[leading].get) if leading in scores else methods[0]
    keep = to_int8.fp32_convs(convs, leading)
    details = {"calibration": {"method": best, "chosen_by": "worst PSNR on selection photos" if scores else "--int8-method",
                            "selection_psnr_db": scores.get(leading, {}), "images": len(calibration),
                            "selection_images": len(selection), "size": list(settings.size),
                            "folder": str(settings.calibration_images)},
            "fp32_convs": {"leading": leading, "names": keep, "of": len(convs), "target_db": settings.target_db,
                           "chosen_by": "fewest reaching target_db on selection photos" if searching
                           else "--int8-fp32-convs", "search_psnr_db": {str(k): v for k, v in scores.items()}}}
    model = onnx.load(str(scratch / f"int8.{leading}.{best}.onnx"))
    _stamp_and_save(model, source, "int8", conversion_settings("int8", settings, frozenset(held_out)), dest, details)
    return details


def export_precision(source: LoadedModel, precision: str, dest: Path, scratch: Path, int8: Int8Settings,
                     held_out: set[str], sizes: tuple[tuple[int, int], ...], log: Callable[[str], None]) -> dict:
    """Write ``dest`` for ``precision``; returns what the report should say about how it was made."""
    import onnx

    from stylecast.export import to_fp16, to_onnx
    from stylecast.runtime.images import atomic_write

    base = scratch / "base.fp32.onnx"
    if not base.is_file():  # one PyTorch export per run, whichever precisions need it
        to_onnx.export_fp32(source, base)
    if precision == "fp32":
        atomic_write(dest, lambda tmp: shutil.copyfile(base, tmp))
        return {}
    if precision == "fp16":
        _stamp_and_save(to_fp16.convert_fp16(onnx.load(str(base))), source, "fp16",
                        conversion_settings("fp16", int8), dest)
        return {"fp32_ops": to_fp16.FP32_OPS}
    return _int8(source, base, dest, scratch, int8, held_out, sizes, log)
