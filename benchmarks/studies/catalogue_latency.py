"""Does one N-style net cost what one single-style net costs? Latency per engine and precision, and `stylecast serve`'s
memory, of a multi-style net against a single-style net of the same architecture.

A catalogue ships as one model instead of N only if its conditional InstanceNorms (a style-weighted affine row per
norm) add next to nothing per image, and if serving it takes about the memory of one model. Latency and memory do
not depend on trained weights, so by default both nets are made here at random init (fixed seed, the shipped
``wave``'s architecture at ``--width``); ``--single`` and ``--multi`` time trained checkpoints instead. Both are
exported with the export pipeline under the same int8 choices, so their int8 graphs quantize the same convs.

- Latency: per resolution, precision and ONNX backend (host CPU), one interleaved cell of the single-style net and
  the multi-style net's two graphs painting one style (one-hot), alternating which goes first: the graph with the
  style folded into its InstanceNorms (what `stylecast stylize --style` runs, the row the target judges) and the
  general graph taking the style input (what serve's batches of mixed styles run). Quoted: the median of same-round
  ratios.
- Memory: peak RSS of `stylecast serve` holding (a) the single-style export, (b) the multi-style export, (c) N copies
  of the single-style export under N names, after two 512² requests per model and style.

    python -m stylecast.benchmarks.studies.catalogue_latency [--width 16 --styles 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import get_args

import httpx
import numpy as np
import torch

from stylecast.benchmarks.gate_calibration import derived_photos
from stylecast.benchmarks.latency import host_rows, key
from stylecast.benchmarks.load.server import running_server
from stylecast.benchmarks.report import write_results
from stylecast.benchmarks.suite import Resolution
from stylecast.benchmarks.timing import FULL, Policy, Timed, describe_error, paired_speedup, run_cell
from stylecast.export import parity
from stylecast.export.pipeline import ExportRequest, onnx_path, run_export
from stylecast.export.precisions import Int8Settings
from stylecast.runtime.backends import Backend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import BACKENDS, EXPORTED, FILE_KINDS, ONNX, GraphRole, companion_path, triton_model_name
from stylecast.runtime.images import atomic_write, encode_image, fit
from stylecast.runtime.machine import describe_class, fingerprint, usable_cores
from stylecast.runtime.styles_catalog import style_weights
from stylecast.train.checkpoint import LoadedModel, load_model, save_model
from stylecast.train.model import ArchConfig, TransformerNet

LATENCY_TARGET = 1.05  # the multi-style net's time / the single-style net's, per engine, precision and resolution
MEMORY_TARGET = 1.2  # serve's peak RSS with the multi-style net / with one single-style net
SEED = 0
FP32_LEADING = 4  # leading convs both int8 graphs keep fp32 (as the gate's wave export): the same graph shape
MEMORY_SIDE = 512  # the requests each served model (and style) answers before its peak RSS is read
# Requests per model and style: a server's peak RSS grows at its second request and then stays (measured to 16), so
# a single count would charge a model for how many requests it was sent rather than for what it holds.
MEMORY_PASSES = 2
# The multi-style net's graphs timed per cell, and the table's name for each: the target judges the folded one.
GRAPHS = {"folded": "style folded (`stylize --style`)", "general": "general (serve's mixed batches)"}


@dataclass
class Study:
    """What is compared and how; the defaults are the committed run's."""

    width: int = 16
    styles: int = 8
    single: Path | None = None  # trained checkpoints; None: random-init nets made in ``work``
    multi: Path | None = None
    work: Path = Path("artifacts/catalogue-latency")
    photos: Path = Path("benchmarks/photos")  # parity photos, and the photo every call runs on
    calibration: Path | None = None  # int8 calibration photos; None: crops and mirrors of ``photos``
    calibration_count: int = 16
    calibration_size: tuple[int, int] = (256, 256)
    parity_sizes: tuple[tuple[int, int], ...] = parity.DEFAULT_SIZES
    resolutions: list[str] = field(default_factory=lambda: ["512", "1080p"])
    precisions: list[str] = field(default_factory=lambda: ["fp32", "int8"])
    backends: list[str] = field(default_factory=lambda: list(FILE_KINDS[ONNX].backends))
    threads: int = field(default_factory=usable_cores)
    policy: Policy = FULL
    memory: bool = True
    out: Path = Path("benchmarks/results/catalogue/latency")

    def __post_init__(self) -> None:
        if (self.single is None) != (self.multi is None):
            raise StylecastError("give both --single and --multi (trained checkpoints), or neither (random init)")
        if self.single is None and self.styles < 2:
            raise StylecastError(f"--styles {self.styles}: a multi-style net holds at least 2; give --styles 2 or more")
        if self.width < 1:
            raise StylecastError(f"--width {self.width}: give a width of 1 or more channels")
        unknown = sorted(set(self.backends) - set(FILE_KINDS[ONNX].backends))
        if unknown:
            raise StylecastError(f"--backend {', '.join(unknown)}: choose from {', '.join(FILE_KINDS[ONNX].backends)}")
        unknown = sorted(set(self.precisions) - set(EXPORTED))
        if unknown:
            raise StylecastError(f"--precision {', '.join(unknown)}: choose from {', '.join(EXPORTED)}")
        for text in self.resolutions:  # refused now, not after the exports
            Resolution.parse(text)


class OneStyle(Backend):
    """A multi-style backend's general graph held to one style: the bench's timing passes the image alone, as for
    any net."""

    def __init__(self, inner: Backend, style: str) -> None:
        super().__init__(inner.path)
        self.inner, self.name, self.inputs = inner, inner.name, inner.inputs
        self.row = style_weights(inner.styles, {style: 1.0})[None]

    @property
    def metadata(self) -> dict[str, str]:
        return self.inner.metadata

    def run(self, batch: np.ndarray, stats: np.ndarray | None = None,
            style: np.ndarray | None = None) -> np.ndarray:
        return self.inner.run(batch, stats, np.repeat(self.row, len(batch), axis=0) if style is None else style)

    def close(self) -> None:
        self.inner.close()


def random_checkpoints(folder: Path, width: int, styles: int) -> tuple[Path, Path]:
    """A single-style and a ``styles``-style net of the same architecture at random init, same seed."""
    made = []
    for name, count in (("single", 1), (f"multi{styles}", styles)):
        torch.manual_seed(SEED)
        meta = {"style": name, "method": "random-init (latency and memory only)"}
        if count > 1:
            meta["styles"] = json.dumps([f"style{i + 1}" for i in range(count)])
        save_model(folder / f"{name}.safetensors", TransformerNet(ArchConfig(width=width, styles=count)), meta)
        made.append(folder / f"{name}.safetensors")
    return made[0], made[1]


def checked_pair(single: Path, multi: Path) -> tuple[LoadedModel, LoadedModel]:
    """The two checkpoints, refused unless one is single-style, the other multi-style, and they differ in nothing
    else of their architecture."""
    one, many = load_model(single), load_model(multi)
    if one.model.config.styles != 1:
        raise StylecastError(f"--single {single}: it holds {one.model.config.styles} styles; give a single-style net")
    if many.model.config.styles < 2:
        raise StylecastError(f"--multi {multi}: it holds one style; give a multi-style net (stylecast train --styles)")
    if replace(one.model.config, styles=many.model.config.styles) != many.model.config:
        raise StylecastError(f"--single {single} and --multi {multi} differ in architecture beyond their styles "
                             f"({one.meta['arch']} vs {many.meta['arch']}); give nets of the same width and blocks")
    if single.stem == multi.stem:
        raise StylecastError(f"--single and --multi are both named {single.stem}; rename one file")
    return one, many


def export_pair(study: Study, single: Path, multi: Path) -> dict[str, dict[str, Path]]:
    """Each net's export per precision (current ones reused), under the same fixed int8 choices."""
    calibration = study.calibration
    if calibration is None and "int8" in study.precisions:
        calibration = study.work / "calibration"
        derived_photos(study.photos, calibration)
    int8 = Int8Settings(calibration_images=calibration, count=study.calibration_count, size=study.calibration_size,
                        method="percentile", selection=0, fp32_leading=FP32_LEADING)
    files: dict[str, dict[str, Path]] = {}
    for role, checkpoint in (("single", single), ("multi", multi)):
        out = study.work / checkpoint.stem
        print(f"exporting {checkpoint} ({', '.join(study.precisions)}) -> {out}", flush=True)
        # Random-init nets may miss a parity floor: their exports are timed, never shipped.
        run_export(ExportRequest(checkpoint, out, precisions=study.precisions, parity_images=study.photos,
                                 sizes=study.parity_sizes, int8=int8,
                                 allow_below_floor=frozenset(study.precisions)), log=lambda _: None)
        files[role] = {p: onnx_path(out, checkpoint.stem, p) for p in study.precisions}
    return files


def compared(single: Timed, multi: Timed) -> dict:
    """One multi-style graph against the single-style net from the same cell: medians, minima, the paired ratio,
    every sample."""
    failed = [f"{role}: {t.error or 'no samples'}" for role, t in (("single", single), ("multi", multi))
              if t.error or not t.samples]
    if failed:
        return {"error": "; ".join(failed)}
    ms = {"single": [s.total_ms for s in single.samples], "multi": [s.total_ms for s in multi.samples]}
    return {"single_ms": float(np.median(ms["single"])), "multi_ms": float(np.median(ms["multi"])),
            "single_min_ms": min(ms["single"]), "multi_min_ms": min(ms["multi"]),
            "ratio": paired_speedup(ms["multi"], ms["single"]), "rounds": len(ms["single"]), "samples_ms": ms}


def latency_cell(single: Path, multi: Path, style: str, precision: str, label: str, batch: np.ndarray,
                 study: Study) -> dict[str, dict]:
    """One interleaved cell on one backend of the single-style net and the multi-style net's graphs (``GRAPHS``):
    per graph, its comparison with the single-style net (or the error)."""
    ours = host_rows("single", single, precision, study.threads)[key("single", label, precision)]
    theirs = host_rows("multi", multi, precision, study.threads)[key("multi", label, precision)]
    if isinstance(ours, str) or isinstance(theirs, str):
        return dict.fromkeys(GRAPHS, {"error": ours if isinstance(ours, str) else theirs})
    with contextlib.ExitStack() as stack:
        try:
            general = stack.enter_context(theirs())
            folded = general.specialized(style_weights(general.styles, {style: 1.0}))
            backends = {"single": stack.enter_context(ours()), "folded": stack.enter_context(folded),
                        "general": OneStyle(general, style)}  # closed with ``general``
        except Exception as exc:  # an engine that cannot open this file (or fold it) is its rows' problem only
            return dict.fromkeys(GRAPHS, {"error": describe_error(exc)})
        timings = run_cell(backends, [batch], study.policy, lambda *_: None)
    return {graph: compared(timings["single"], timings[graph]) for graph in GRAPHS}


def latency(study: Study, files: dict[str, dict[str, Path]], style: str, photo: np.ndarray) -> list[dict]:
    """A row per resolution, precision and backend; sessions of one cell are freed before the next opens."""
    rows = []
    for text in study.resolutions:
        resolution = Resolution.parse(text)
        batch = fit(photo, resolution.height, resolution.width).transpose(2, 0, 1)[None].astype(np.float32)
        for precision in study.precisions:
            for name in study.backends:
                label = BACKENDS[name].label
                print(f"timing {resolution.label} {precision} on {label}", flush=True)
                found = latency_cell(files["single"][precision], files["multi"][precision], style, precision, label,
                                     batch, study)
                for graph, result in found.items():
                    row = {"resolution": resolution.label, "precision": precision, "backend": label, "graph": graph,
                           **result}
                    if graph == "folded" and "ratio" in result:  # the target judges what `stylize --style` runs
                        row["passed"] = result["ratio"] <= LATENCY_TARGET
                    rows.append(row)
    return rows


def copies(single: Path, count: int, folder: Path) -> list[Path]:
    """``count`` copies of an export (with its tiled graphs) under names of their own, so a server loads each as a
    model of its own."""
    made = []
    stem, rest = single.name.split(".", 1)
    for i in range(1, count + 1):
        copy = folder / f"{stem}{i}.{rest}"
        for source, dest in [(single, copy), *((companion_path(single, r), companion_path(copy, r))
                                               for r in get_args(GraphRole))]:
            atomic_write(dest, lambda tmp, source=source: shutil.copyfile(source, tmp))
        made.append(copy)
    return made


def served_peak_mib(models: list[Path], requests: list[dict[str, str]], image: bytes) -> float:
    """`stylecast serve`'s peak RSS after answering ``requests`` (query parameters) with ``image``, one at a time,
    ``MEMORY_PASSES`` times over."""
    with running_server(models) as server:
        for params in requests * MEMORY_PASSES:
            answer = httpx.post(f"{server.url}/v1/stylize", content=image, params=params, timeout=300)
            if answer.status_code != 200:
                raise StylecastError(f"stylecast serve answered {answer.status_code} to {params}: {answer.text[:200]}")
        return server.peak_rss_mib()


def memory(files: dict[str, dict[str, Path]], styles: list[str], photo: np.ndarray, work: Path,
           precisions: list[str]) -> list[dict]:
    """Per precision: serve's peak RSS with the single-style export, the multi-style one, and N single-style ones."""
    image = encode_image(fit(photo, MEMORY_SIDE, MEMORY_SIDE), None, "JPEG")
    rows = []
    for precision in precisions:
        single, multi = files["single"][precision], files["multi"][precision]
        eight = copies(single, len(styles), work / "copies")
        print(f"serve memory, {precision}: one single-style model, the {len(styles)}-style one, "
              f"{len(styles)} single-style ones", flush=True)
        mib = {"single": served_peak_mib([single], [{"model": triton_model_name(single)}], image),
               "multi": served_peak_mib([multi], [{"model": triton_model_name(multi), "style": s} for s in styles],
                                        image),
               "copies": served_peak_mib(eight, [{"model": triton_model_name(m)} for m in eight], image)}
        ratio = mib["multi"] / mib["single"]
        rows.append({"precision": precision, **{f"{role}_mib": value for role, value in mib.items()},
                     "copies": len(eight), "multi_vs_single": ratio, "multi_vs_copies": mib["multi"] / mib["copies"],
                     "passed": ratio <= MEMORY_TARGET, "bytes": {"single": single.stat().st_size,
                                                                 "multi": multi.stat().st_size}})
    return rows


def markdown(record: dict) -> str:
    n, threads = record["styles_count"], record["machine"]["threads"]
    lines = [f"# One {n}-style net vs single-style nets: latency and serve memory ({record['date']})", "",
             f"{describe_class(record['machine'])}, {threads} thread(s), batch 1. Nets: {record['nets']}. Both "
             f"exported by the export pipeline; int8 keeps the same convs fp32 in both ({FP32_LEADING} leading and "
             "the last). Per resolution, precision and backend one interleaved cell of the single-style net and the "
             "multi-style net's two graphs painting one style (one-hot), each round alternating which runs first: "
             "the style folded into the InstanceNorms (what `stylecast stylize --style` runs) and the general graph "
             "taking the style input (what `stylecast serve` runs for its batches of mixed styles). ms = median "
             "(min) over rounds; ratio = median of same-round multi / single.",
             f"Targets: latency ratio ≤ {LATENCY_TARGET:.2f}× in every folded row (the general rows are shown, not "
             f"judged); serve's peak RSS with the {n}-style net ≤ {MEMORY_TARGET:.1f}× with one single-style net.",
             "Regenerate: `make catalogue-latency`, alone on the machine (small CPUs are easily disturbed).", "",
             "| res | precision | backend | multi-style graph | single ms | multi ms | multi / single | target |",
             "|---|---|---|---|---|---|---|---|"]
    for row in record["latency"]:
        head = f"| {row['resolution']} | {row['precision']} | {row['backend']} | {GRAPHS[row['graph']]} |"
        if "error" in row:
            lines.append(f"{head} {row['error']} | – | – | – |")
            continue
        target = ("pass" if row["passed"] else "FAIL") if "passed" in row else "–"
        lines.append(f"{head} {row['single_ms']:.1f} ({row['single_min_ms']:.1f}) | "
                     f"{row['multi_ms']:.1f} ({row['multi_min_ms']:.1f}) | {row['ratio']:.3f}× | {target} |")
    if record["memory"]:
        lines += ["", f"`stylecast serve` (default backend) peak RSS after {MEMORY_PASSES} requests ({MEMORY_SIDE}²) per "
                  f"model and style (it settles by the second): one single-style model, the {n}-style model, and {n} "
                  "copies of the single-style model under names of their own (loaded as separate models).", "",
                  f"| precision | one single MiB | {n}-style MiB | {n} singles MiB | {n}-style / one single | "
                  f"{n}-style / {n} singles | target |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['precision']} | {r['single_mib']:.0f} | {r['multi_mib']:.0f} | {r['copies_mib']:.0f} | "
                  f"{r['multi_vs_single']:.3f}× | {r['multi_vs_copies']:.3f}× | {'pass' if r['passed'] else 'FAIL'} |"
                  for r in record["memory"]]
    lines.append("")
    for graph in GRAPHS:
        timed = [r for r in record["latency"] if "ratio" in r and r["graph"] == graph]
        if not timed:
            continue
        worst = max(timed, key=lambda r: r["ratio"])
        within = sum(r["ratio"] <= LATENCY_TARGET for r in timed)
        lines.append(f"- Latency, {GRAPHS[graph]}: {within} of {len(timed)} timed rows within {LATENCY_TARGET:.2f}×; "
                     f"worst {worst['ratio']:.3f}× ({worst['resolution']} {worst['precision']} {worst['backend']}).")
    for r in record["memory"]:
        lines.append(f"- Memory, {r['precision']}: the {n}-style model takes {r['multi_vs_single']:.2f}× one "
                     f"single-style model's serve RSS ({'meets' if r['passed'] else 'misses'} ≤ "
                     f"{MEMORY_TARGET:.1f}×) and {r['multi_vs_copies']:.2f}× that of {r['copies']} single-style "
                     "models.")
    return "\n".join(lines) + "\n"


def run(study: Study) -> dict:
    """Make or check the nets, export them, time them, measure serve; write the report; return its record."""
    given = study.single is not None
    single, multi = ((study.single, study.multi) if given
                     else random_checkpoints(study.work / "models", study.width, study.styles))
    one, many = checked_pair(single, multi)
    files = export_pair(study, single, multi)
    photo = parity.parity_images(study.photos, limit=1)[0]
    rows = latency(study, files, many.styles[0], photo)
    used = memory(files, many.styles, photo, study.work, study.precisions) if study.memory else []
    nets = (f"{single} and {multi}" if given else
            f"random init (seed {SEED}), width {one.model.config.width}, {one.model.config.res_blocks} residual blocks")
    record = {"date": time.strftime("%Y-%m-%d"), "machine": {**fingerprint(), "threads": study.threads},
              "styles_count": many.model.config.styles, "styles": many.styles,
              "nets": nets, "arch": one.meta["arch"], "policy": vars(study.policy),
              "targets": {"latency_ratio": LATENCY_TARGET, "memory_ratio": MEMORY_TARGET},
              "latency": rows, "memory": used}
    write_results(study.out, record, markdown(record))
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16, help="random-init nets: channels after the first conv")
    parser.add_argument("--styles", type=int, default=8, help="random-init nets: styles of the multi-style one")
    parser.add_argument("--single", type=Path, help="a trained single-style checkpoint (with --multi)")
    parser.add_argument("--multi", type=Path, help="a trained multi-style checkpoint (with --single)")
    parser.add_argument("--work", type=Path, default=Path("artifacts/catalogue-latency"))
    parser.add_argument("--photos", type=Path, default=Path("benchmarks/photos"))
    parser.add_argument("--calibration", type=Path, help="int8 calibration photos (default: crops of --photos)")
    parser.add_argument("--resolution", action="append", help="512, 1080p or WxH; repeat (default 512 and 1080p)")
    parser.add_argument("--precision", action="append", help=f"{', '.join(EXPORTED)}; repeat (default fp32, int8)")
    parser.add_argument("--backend", action="append", help=f"{', '.join(FILE_KINDS[ONNX].backends)}; repeat "
                                                           "(default all)")
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--budget", type=float, default=FULL.budget_s, help="seconds of timed rounds per cell")
    parser.add_argument("--no-memory", action="store_true", help="skip the serve memory part")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/catalogue/latency"))
    args = parser.parse_args(argv)
    try:
        study = Study(width=args.width, styles=args.styles, single=args.single, multi=args.multi, work=args.work,
                      photos=args.photos, calibration=args.calibration,
                      resolutions=args.resolution or ["512", "1080p"], precisions=args.precision or ["fp32", "int8"],
                      backends=args.backend or list(FILE_KINDS[ONNX].backends), threads=args.threads,
                      policy=replace(FULL, budget_s=args.budget), memory=not args.no_memory, out=args.out)
        torch.set_num_threads(study.threads)  # the process's, so here and not in run(), which tests call
        record = run(study)
    except StylecastError as exc:
        sys.exit(f"error: {exc}")
    print(markdown(record) + f"wrote {args.out}.md and .json")


if __name__ == "__main__":
    main()
