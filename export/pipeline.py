"""`stylecast export`: checkpoint -> ONNX per precision, each parity-checked, plus report.json."""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stylecast.export import norm_graphs, parity, precisions, to_onnx, trt_conformance
from stylecast.export.precisions import Int8Settings
from stylecast.runtime import formats
from stylecast.runtime.artifacts import onnx_metadata, sha256_file, tool_versions
from stylecast.runtime.backends import Backend, load_backend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import EXPORTED
from stylecast.runtime.images import atomic_write, fit
from stylecast.runtime.metrics import Comparison
from stylecast.train.checkpoint import load_model


@dataclass
class ExportRequest:
    checkpoint: Path
    out_dir: Path
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    parity_images: Path = Path("benchmarks/photos")
    sizes: tuple[tuple[int, int], ...] = parity.DEFAULT_SIZES
    force: bool = False
    int8: Int8Settings = field(default_factory=Int8Settings)
    # Precisions whose floor miss is reported (report.json "below_target") instead of failing the export.
    allow_below_floor: frozenset[str] = frozenset()


def onnx_path(out_dir: Path, name: str, precision: str) -> Path:
    return out_dir / formats.precision(precision).onnx_name(name)


def is_current(path: Path, checkpoint_sha: str, conversion: str = "") -> bool:
    """An existing export is reused only if it came from this checkpoint, stylecast and conversion settings."""
    if not path.is_file():
        return False
    try:
        meta = onnx_metadata(path)
    except StylecastError:  # a truncated or foreign file at the destination is redone, not a reason to stop
        return False
    ours = json.loads(tool_versions()).get("stylecast")
    return (meta.get("source_sha256") == checkpoint_sha and meta.get("conversion", "") == conversion
            and json.loads(meta.get("versions", "{}")).get("stylecast") == ours)


def check_parity(reference: parity.Reference, backend: Backend, precision: str,
                 sizes: tuple[tuple[int, int], ...]) -> dict:
    """One backend's outputs against the PyTorch reference, judged by the precision's floors; a multi-style model
    is judged in every style (one-hot), each reported under ``styles``, and passes when all of them do."""
    results = parity.measure(reference, backend, sizes)
    row = formats.PRECISIONS[precision]

    def judged(rows: list[parity.SizeParity]) -> dict:
        worst, worst_ssim = min(r.psnr_min for r in rows), min(r.ssim_min for r in rows)
        return {"psnr_min": worst, "ssim_min": worst_ssim,
                "passed": worst >= row.psnr_floor_db and worst_ssim >= row.ssim_floor}

    checked = {**judged(results), "psnr_floor_db": row.psnr_floor_db, "ssim_floor": row.ssim_floor,
               "parity": parity.as_dicts(results)}
    if None not in reference.styles:
        checked["styles"] = {style: {key: parity.json_safe(value)
                                     for key, value in judged([r for r in results if r.style == style]).items()}
                             for style in reference.styles}
    return checked


def log_parity(checked: dict, label: str, log: Callable[[str], None]) -> None:
    """Each style's worst PSNR and SSIM (a multi-style model's), under ``label``."""
    for style, found in checked.get("styles", {}).items():
        log(f"{label} {style}: worst PSNR {found['psnr_min']:.1f} dB, SSIM {found['ssim_min']:.4f}"
            + ("" if found["passed"] else " - BELOW the floor"))


def tiled_parity(dest: Path, photos: list[np.ndarray], sizes: tuple[tuple[int, int], ...],
                 styles: list[np.ndarray | None], log: Callable[[str], None]) -> dict:
    """Write the statistics and apply graphs of tiled inference beside ``dest``, and check that on a whole image,
    with its own statistics, they compute what ``dest`` computes, on the default backend (in each of ``styles``,
    a multi-style model's style weights, else ``[None]``). They hold the same
    operations with InstanceNorm written out: fp32 and fp16 graphs agree to float rounding, but an int8 graph
    quantizes the normalised activations before its next conv, where the written-out sum's last-bit differences
    move some values across a rounding step (about 44 dB apart at every ONNX Runtime optimisation level), so the
    check holds them to the lowest floor any precision keeps against PyTorch: far above what a broken graph would
    give."""
    files = norm_graphs.write_companions(dest, to_onnx.save_onnx)
    default = formats.BackendOptions(provider=["CPUExecutionProvider"])
    floor = min(formats.PRECISIONS[name].psnr_floor_db for name in formats.EXPORTED)
    compared = Comparison()
    with (load_backend(dest, default) as single, load_backend(files["stats"], default) as stats,
          load_backend(files["apply"], default) as apply):
        for height, width in sizes:
            for rgb, style in itertools.product(photos, styles):
                batch = fit(rgb, height, width).transpose(2, 0, 1)[None].astype(np.float32)
                row = None if style is None else style[None]
                compared.add(single.run(batch, style=row), apply.run(batch, stats.run(batch, style=row), row))
    passed = compared.within(floor)
    log(f"{dest.name}'s tiled graphs vs the single pass: worst PSNR {compared.psnr_min:.1f} dB"
        + ("" if passed else f" - BELOW {floor:.0f} dB"))
    return {"files": {role: str(path.relative_to(dest.parent)) for role, path in files.items()},
            "psnr_min_vs_single": round(compared.psnr_min, 3), "psnr_floor_db": floor, "passed": passed}


def other_backends_parity(reference: parity.Reference, dest: Path, precision: str,
                          sizes: tuple[tuple[int, int], ...], log: Callable[[str], None]) -> dict:
    """The same file on every other backend of the table that runs ONNX files, where it is installed: reported
    under the backend's name, not a reason to fail an export that the default backend runs within its floor (the
    bench gate checks those floors)."""
    found = {}
    for name in formats.FILE_KINDS[formats.ONNX].backends[1:]:
        label = formats.BACKENDS[name].label
        try:
            backend = load_backend(dest, formats.BackendOptions(backend=name))
        except StylecastError as exc:  # not installed, or this file is not one it reads
            found[name] = {"skipped": str(exc)}
            continue
        with backend:
            try:
                checked = check_parity(reference, backend, precision, sizes)
            except StylecastError as exc:
                log(f"{precision} on {label}: {exc}")
                found[name] = {"passed": False, "error": str(exc)}
                continue
            log(f"{precision} on {label} ({backend.describe()}): worst PSNR {checked['psnr_min']:.1f} dB, "
                f"SSIM {checked['ssim_min']:.4f}" + ("" if checked["passed"] else " - BELOW the floor"))
            log_parity(checked, f"{precision} on {label}", log)
            found[name] = {"passed": checked["passed"], **backend.details(), "parity": checked["parity"],
                           **_per_style(checked)}
    return found


def _per_style(checked: dict) -> dict:
    """A multi-style model's per-style verdicts, for its report entry."""
    return {"styles": checked["styles"]} if "styles" in checked else {}


def _how_it_was_made(report_path: Path, dest: Path) -> dict:
    """A reused file's conversion details (int8 search, fp16 ops): from the report that made it, if it is that
    file, else from the file's own ``made`` metadata (a report rewritten by an older version lost them)."""
    try:
        previous = json.loads(report_path.read_text())
    except (OSError, ValueError):
        previous = {}
    digest = sha256_file(dest)
    entry = next((e for e in previous.get("exports", []) if e.get("file") == dest.name and e.get("sha256") == digest),
                 {})
    found = {key: entry[key] for key in ("calibration", "fp32_convs", "fp32_ops") if key in entry}
    if found:
        return found
    try:
        return json.loads(onnx_metadata(dest).get("made", "{}"))
    except (StylecastError, ValueError):  # not an ONNX this version reads: nothing to report
        return {}


def phases(request: ExportRequest) -> int:
    """How many phases run_export reports through ``step`` (each call = one finished phase)."""
    return 2 * len(request.precisions)


def run_export(request: ExportRequest, log: Callable[[str], None] = print,
               step: Callable[[str], None] = lambda _: None) -> dict:
    source = load_model(request.checkpoint)
    style = source.meta["style"]
    checkpoint_sha = sha256_file(request.checkpoint)
    unknown = [p for p in request.precisions if p not in EXPORTED]
    if unknown:
        raise StylecastError(f"unknown precision(s) {unknown}; choose from {', '.join(EXPORTED)}")
    photos = parity.parity_images(request.parity_images)
    # PyTorch outputs once, for every precision (a multi-style model's in each of its styles)
    reference = parity.Reference(source.model, photos, source.styles)
    held_out = {sha256_file(p) for p in parity.parity_files(request.parity_images)}
    name = request.checkpoint.stem  # wave, wave-slim: students never overwrite their teacher's files
    multi = {"styles": source.styles} if source.model.config.styles > 1 else {}
    report = {"style": style, **multi, "name": name, "source_checkpoint": str(request.checkpoint),
              "source_sha256": checkpoint_sha,
              "parity_images": len(photos), "versions": json.loads(tool_versions(*to_onnx.EXPORT_TOOLS)),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "exports": []}
    failures = []
    with tempfile.TemporaryDirectory(prefix="stylecast-export-") as scratch:
        for precision in request.precisions:
            dest = onnx_path(request.out_dir, name, precision)
            conversion = precisions.conversion_settings(precision, request.int8, frozenset(held_out))
            reused = not request.force and is_current(dest, checkpoint_sha, conversion)
            details: dict = {}
            if reused:
                log(f"{dest}: up to date with {request.checkpoint.name}, re-checking parity")
                details = _how_it_was_made(request.out_dir / "report.json", dest)
            else:
                log(f"exporting {dest}")
                details = precisions.export_precision(source, precision, dest, Path(scratch), request.int8,
                                                      held_out, request.sizes, log)
            step(f"{precision}: exported, checking parity")
            default = formats.BackendOptions(backend=formats.FILE_KINDS[formats.ONNX].backend,
                                             provider=["CPUExecutionProvider"])
            with load_backend(dest, default) as backend:
                checked = check_parity(reference, backend, precision, request.sizes)
            worst, worst_ssim, passed = checked["psnr_min"], checked["ssim_min"], checked["passed"]
            floor_db, floor_ssim = checked["psnr_floor_db"], checked["ssim_floor"]
            log(f"{precision}: worst PSNR {worst:.1f} dB, SSIM {worst_ssim:.4f} vs PyTorch fp32 "
                f"(floors {floor_db:.0f} dB, {floor_ssim})")
            log_parity(checked, precision, log)
            tiled = tiled_parity(dest, photos, request.sizes, list(reference.styles.values()), log)
            if not tiled["passed"]:
                failures.append(f"{dest.name}'s tiled graphs differ from it ({tiled['psnr_min_vs_single']:.1f} dB)")
            parser = trt_conformance.check_releases(dest)
            broken = [f"TensorRT {release}: {line}" for release, lines in parser.items() for line in lines]
            for graph in tiled["files"].values():
                broken += [f"TensorRT {release}: {Path(graph).name}: {line}"
                           for release, lines in trt_conformance.check_releases(request.out_dir / graph).items()
                           for line in lines]
            for line in broken:
                log(f"{dest.name}: {line}")
            if broken:
                failures.append(f"{dest.name} breaks {len(broken)} TensorRT parser constraint(s), e.g. {broken[0]}")
            report["exports"].append({
                "precision": precision, "file": dest.name, "bytes": dest.stat().st_size,
                "sha256": sha256_file(dest), "reused": reused, "psnr_floor_db": floor_db,
                "ssim_floor": floor_ssim, "passed": passed, "parity": checked["parity"], **_per_style(checked),
                "tensorrt_parser": {release: lines or "conforms" for release, lines in parser.items()}, "tiled": tiled,
                **details, **other_backends_parity(reference, dest, precision, request.sizes, log),
            })
            step(f"{precision}: parity checked")
            if not passed and precision in request.allow_below_floor:
                report["exports"][-1]["below_target"] = True
                log(f"WARNING: {dest.name} is below its parity target and kept only because of "
                    f"--allow-below-floor {precision}; see {request.out_dir / 'report.json'}")
            elif not passed:
                failures.append(f"{dest.name} {worst:.1f} dB / SSIM {worst_ssim:.4f} below "
                                f"{floor_db:.0f} dB / {floor_ssim}")
    report_path = request.out_dir / "report.json"
    atomic_write(report_path, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    if failures:
        raise StylecastError(f"export check failed ({'; '.join(failures)}); see {report_path}")
    return report
