"""One exported ONNX per precision: fp32 straight from PyTorch, fp16 and int8 derived from that fp32 graph."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx

from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import load_image
from stylecast.train.checkpoint import LoadedModel

from . import parity, to_fp16, to_int8, to_onnx


@dataclass(frozen=True)
class Int8Settings:
    """Where int8 scales come from. ``method='auto'`` tries each and keeps the best measured one."""

    calibration_images: Path | None = None
    # ONNX Runtime's calibrators keep every intermediate tensor of every photo in memory until the end:
    # 32 photos at 512x512 were OOM-killed at 15 GB resident on this 24 GiB machine; 16 at 256x256 fit.
    count: int = 16
    size: tuple[int, int] = (256, 256)  # the deployment resolution the scales are calibrated at
    method: str = "auto"
    selection: int = 4  # further photos, not used for calibration, that pick the method

    def __post_init__(self) -> None:
        if self.method != "auto" and self.method not in to_int8.METHODS:
            raise StylecastError(f"--int8-method {self.method}: choose auto or one of {sorted(to_int8.METHODS)}")
        if self.count < 1 or self.selection < 0:
            raise StylecastError("--calibration-count must be at least 1")

    def methods(self) -> list[str]:
        return sorted(to_int8.METHODS) if self.method == "auto" else [self.method]


def parse_size(text: str) -> tuple[int, int]:
    """'512x512' -> (512, 512): height x width."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 16 for p in parts):
        raise StylecastError(f"size '{text}': expected HxW with both at least 16, e.g. 512x512")
    return int(parts[0]), int(parts[1])


def conversion_settings(precision: str, int8: Int8Settings) -> str:
    """What, besides the checkpoint, decides the graph: stored in its metadata to tell when it is stale."""
    if precision == "fp16":
        return json.dumps({"fp32_ops": to_fp16.FP32_OPS})
    if precision == "int8":
        folder = int8.calibration_images.name if int8.calibration_images else None
        return json.dumps({"calibration_images": folder, "count": int8.count, "size": list(int8.size),
                           "method": int8.method, "selection": int8.selection})
    return ""


def _stamp_and_save(model: onnx.ModelProto, source: LoadedModel, precision: str, conversion: str,
                    dest: Path) -> None:
    to_onnx.set_metadata(model, {**to_onnx.onnx_metadata(source, precision), "conversion": conversion})
    to_onnx.save_onnx(model, dest)


def _int8(source: LoadedModel, base: Path, dest: Path, scratch: Path, settings: Int8Settings,
          held_out: set[str], sizes: tuple[tuple[int, int], ...], log: Callable[[str], None]) -> dict:
    if settings.calibration_images is None:
        raise StylecastError("int8 needs real photos to calibrate on: pass --calibration-images DIR "
                             "(disjoint from --parity-images)")
    files = to_int8.calibration_files(settings.calibration_images, settings.count + settings.selection, held_out)
    calibration, selection = files[:settings.count], files[settings.count:]
    methods = settings.methods()
    if len(methods) > 1 and not selection:
        raise StylecastError(f"{settings.calibration_images}: too few photos to choose a calibration method; "
                             f"add photos or pass --int8-method")
    scores: dict[str, float] = {}
    for method in methods:
        candidate = scratch / f"int8.{method}.onnx"
        log(f"int8: calibrating ({method}) on {len(calibration)} photos at {settings.size[0]}x{settings.size[1]}")
        to_int8.quantize_int8(base, candidate, calibration, settings.size, method)
        if len(methods) > 1:
            photos = [load_image(p).rgb for p in selection]
            backend = OnnxRuntimeBackend(candidate, providers=["CPUExecutionProvider"])
            results = parity.measure(source.model, backend, photos, sizes)
            scores[method] = min(r.psnr_min for r in results)
            log(f"int8: {method} gives {scores[method]:.1f} dB on {len(selection)} selection photos")
    best = max(scores, key=scores.get) if scores else methods[0]
    model = onnx.load(str(scratch / f"int8.{best}.onnx"))
    conversion = conversion_settings("int8", settings)
    _stamp_and_save(model, source, "int8", conversion, dest)
    return {"calibration": {"method": best, "chosen_by": "worst PSNR on selection photos" if scores else "--int8-method",
                            "selection_psnr_db": {k: round(v, 2) for k, v in scores.items()},
                            "images": len(calibration), "selection_images": len(selection),
                            "size": list(settings.size), "folder": str(settings.calibration_images)}}


def export_precision(source: LoadedModel, precision: str, dest: Path, scratch: Path, int8: Int8Settings,
                     held_out: set[str], sizes: tuple[tuple[int, int], ...], log: Callable[[str], None]) -> dict:
    """Write ``dest`` for ``precision``; returns what the report should say about how it was made."""
    if precision == "fp32":
        to_onnx.export_fp32(source, dest)
        return {}
    base = scratch / "base.fp32.onnx"
    if not base.is_file():
        to_onnx.export_fp32(source, base)
    if precision == "fp16":
        _stamp_and_save(to_fp16.convert_fp16(onnx.load(str(base))), source, "fp16",
                        conversion_settings("fp16", int8), dest)
        return {"fp32_ops": to_fp16.FP32_OPS}
    return _int8(source, base, dest, scratch, int8, held_out, sizes, log)
