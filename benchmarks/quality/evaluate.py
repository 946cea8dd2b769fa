"""Score stylized images of any origin against their photos and the style with one yardstick.

Every method (a feed-forward ONNX model that evaluate runs and times itself, or a folder of
outputs from `stylecast optimize`, `stylecast stylize`, an engine...) is measured with the same
loss network and layers: content and style losses relative to their targets (see
:class:`~stylecast.train.losses.RelativeStyleLoss`), SSIM and PSNR against the photo, and the
time per image (measured, or read from the output's sidecar).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from stylecast.runtime.artifacts import sha256_file, sidecar_path, tool_versions
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.gallery import make_gallery
from stylecast.runtime.images import IMAGE_SUFFIXES, atomic_write, load_image, resize_long_side, resize_to, save_image
from stylecast.runtime.metrics import psnr, ssim
from stylecast.runtime.timing import timed_ms
from stylecast.train.gatys.optimize import to_tensor
from stylecast.train.losses import GATYS_CONTENT_LAYER, GATYS_STYLE_LAYERS, RelativeStyleLoss, style_grams
from stylecast.train.vgg import VGGFeatures

CONTENT_ROW = "content (no style)"
FID_NOT_COMPUTED = ("not computed: FID needs Inception-v3 weights, which cannot be downloaded here and which no "
                    "installed library ships; pass --fid-weights inception-2015-12-05.pt and --fid-reference")
FID_NOTE = ("against the reference set; below a few thousand images per set FID is biased upwards, so compare "
            "methods only at equal set sizes")


@dataclass
class Method:
    name: str
    source: Path  # an .onnx model to run, or a folder of outputs

    @property
    def runs_model(self) -> bool:
        return self.source.suffix.lower() == ".onnx"


@dataclass
class Score:
    method: str
    image: str
    content_loss: float
    style_loss: float
    ssim: float
    psnr: float
    seconds: float | None  # None: the output carries no timing
    timing: str  # measured | sidecar | none
    output: str


@dataclass
class Evaluation:
    style: Path
    contents: list[Path]
    methods: list[Method]
    out_dir: Path
    size: int = 256
    loss_net: str = "vgg16"
    net_id: str = ""
    fid_weights: Path | None = None
    fid_reference: list[Path] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)


def parse_method(spec: str) -> Method:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise StylecastError(f"--method {spec}: expected NAME=PATH (an .onnx model or a folder of outputs)")
    source = Path(path)
    if not source.exists():
        raise StylecastError(f"--method {spec}: {source} does not exist")
    if not (source.is_dir() or source.suffix.lower() == ".onnx"):
        raise StylecastError(f"--method {spec}: give an .onnx model or a folder of stylized images")
    return Method(name, source)


def find_output(folder: Path, content: Path) -> Path:
    """``<stem>.<ext>`` or ``<stem>.<tag>.<ext>`` (how stylize and optimize name outputs); loss curves skipped."""
    found = [p for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.endswith(".loss.png")
             and (p.stem == content.stem or p.name.startswith(content.stem + "."))]
    if len(found) != 1:
        what = "no output" if not found else f"{len(found)} candidate outputs ({', '.join(p.name for p in found)})"
        raise StylecastError(f"{folder}: {what} for {content.name}; name it {content.stem}.png (one per photo)")
    return found[0]


def check_lineage(output: Path, content: Path, style_sha: str) -> dict:
    """An output's sidecar, if any; refuse one made from another photo or another style image."""
    path = sidecar_path(output)
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except ValueError as exc:
        raise StylecastError(f"{path}: not readable JSON ({exc}); delete it or re-create the output") from exc
    if meta.get("content_sha256") and meta["content_sha256"] != sha256_file(content):
        raise StylecastError(f"{output}: made from another photo than {content} (sidecar content_sha256 differs)")
    styles = [s.get("sha256") for s in meta.get("styles", [])]
    if styles and style_sha not in styles:
        raise StylecastError(f"{output}: made with another style image than the one evaluated; pass that --style")
    return meta


class Evaluator:
    """Runs or collects each method's outputs, scores them, and writes JSON, Markdown and a contact sheet."""

    def __init__(self, evaluation: Evaluation, vgg: VGGFeatures) -> None:
        self.ev, self.vgg = evaluation, vgg
        self.style_rgb = load_image(evaluation.style).rgb
        self.style_sha = sha256_file(evaluation.style)
        # The style's Gram targets are the same for every photo: computed once, not per photo.
        self.style_grams = style_grams(vgg, [(to_tensor(resize_long_side(self.style_rgb, evaluation.size)), 1.0)])
        self.stylizers = {m.name: self._stylizer(m) for m in evaluation.methods if m.runs_model}
        self.inception = self._inception() if evaluation.fid_weights else None  # bad weights fail before the work
        self.warm: set[str] = set()

    def _stylizer(self, method: Method):  # noqa: ANN202 - a runtime Stylizer
        from stylecast.runtime.stylizer import Stylizer

        stylizer = Stylizer(method.source)
        trained_on = stylizer.backend.metadata.get("style_image_sha256")
        if trained_on and trained_on != self.style_sha:
            raise StylecastError(f"{method.source}: trained on another style image than {self.ev.style}; "
                                 "pass the one it was trained on as --style")
        return stylizer

    def _output(self, method: Method, content: Path, photo: np.ndarray) -> tuple[np.ndarray, float | None, str, Path]:
        if method.runs_model:
            stylizer = self.stylizers[method.name]
            if method.name not in self.warm:
                stylizer(photo)  # the first run pays for allocation and graph optimisation: not timed
                self.warm.add(method.name)
            result, ms = timed_ms(lambda: stylizer(photo))
            seconds = ms / 1e3
            dest = self.ev.out_dir / method.name / f"{content.stem}.png"
            save_image(dest, result)
            return result, seconds, "measured", dest
        output = find_output(method.source, content)
        meta = check_lineage(output, content, self.style_sha)
        seconds = meta.get("seconds")
        return load_image(output).rgb, seconds, "sidecar" if seconds is not None else "none", output

    def _score(self, name: str, content: Path, photo: np.ndarray, result: np.ndarray, loss: RelativeStyleLoss,
               seconds: float | None, timing: str, output: Path) -> Score:
        result = resize_to(result, photo.shape[1], photo.shape[0])
        with torch.no_grad():
            terms = loss(to_tensor(result))
        return Score(name, content.name, float(terms["content"]), float(terms["style"]), ssim(photo, result),
                     min(psnr(photo, result), 99.0), seconds, timing, str(output))

    def run(self, progress=lambda done: None) -> dict:  # noqa: ANN001 - progress(advance) callback
        ev = self.ev
        rows = []
        for content in ev.contents:
            photo = resize_long_side(load_image(content).rgb, ev.size)
            loss = RelativeStyleLoss(self.vgg, to_tensor(photo), self.style_grams)
            row = [photo]
            ev.scores.append(self._score(CONTENT_ROW, content, photo, photo, loss, None, "none", content))
            for method in ev.methods:
                result, seconds, timing, output = self._output(method, content, photo)
                ev.scores.append(self._score(method.name, content, photo, result, loss, seconds, timing, output))
                row.append(resize_to(result, photo.shape[1], photo.shape[0]))
                progress(1)
            rows.append(tuple(row))
        report = self.report(self._fid(rows) if self.inception else FID_NOT_COMPUTED)
        out = ev.out_dir
        atomic_write(out / "report.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
        atomic_write(out / "report.md", lambda tmp: tmp.write_text(markdown(report)))
        make_gallery(rows, out / "contact.png", title=f"stylecast evaluate: {ev.style.name}, loss net {ev.loss_net}",
                     style=self.style_rgb, labels=["content", *(m.name for m in ev.methods)])
        return report

    def _inception(self):  # noqa: ANN202 - fid.InceptionFeatures
        from stylecast.benchmarks.quality.fid import InceptionFeatures

        if len(self.ev.fid_reference) < 2 or len(self.ev.contents) < 2:
            raise StylecastError("FID needs at least 2 photos to evaluate and 2 --fid-reference images "
                                 "(e.g. paintings of the style, or real photos)")
        return InceptionFeatures(self.ev.fid_weights)

    def _fid(self, rows: list[tuple[np.ndarray, ...]]) -> dict:
        """FID of each method's outputs (and of the unstyled photos) against the reference images."""
        from stylecast.benchmarks.quality.fid import frechet_distance

        ev, inception = self.ev, self.inception
        reference = inception([load_image(p).rgb for p in ev.fid_reference])
        names = [CONTENT_ROW, *(m.name for m in ev.methods)]
        values = {name: frechet_distance(inception([row[i] for row in rows]), reference)
                  for i, name in enumerate(names)}
        return {"weights": ev.fid_weights.name, "weights_sha256": inception.sha256, "reference_images": len(reference),
                "images_per_method": len(rows), "note": FID_NOTE, "values": values}

    def report(self, fid: dict | str) -> dict:
        ev = self.ev
        summary = []
        for name in [CONTENT_ROW, *(m.name for m in ev.methods)]:
            mine = [s for s in ev.scores if s.method == name]
            timed = [s.seconds for s in mine if s.seconds is not None]
            summary.append({
                "method": name, "images": len(mine),
                **{key: float(np.mean([getattr(s, key) for s in mine]))
                   for key in ("content_loss", "style_loss", "ssim", "psnr")},
                "seconds_per_image": float(np.mean(timed)) if timed else None,
                "timing": sorted({s.timing for s in mine}),
            })
        return {
            "style_image": ev.style.name, "style_sha256": self.style_sha,
            "contents": [p.name for p in ev.contents], "size": ev.size,
            "loss_network": {"name": ev.loss_net, "weights": ev.net_id, "input": self.vgg.input,
                             "content_layer": GATYS_CONTENT_LAYER, "style_layers": list(GATYS_STYLE_LAYERS),
                             "content_loss": "|F - P|^2 / |P|^2 (features F of the output, P of the photo)",
                             "style_loss": "mean over the style layers of |G - A|^2 / |A|^2 (Gram matrices G of "
                                           "the output, A of the style image)"},
            "methods": {m.name: str(m.source) for m in ev.methods},
            "summary": summary, "scores": [asdict(s) for s in ev.scores], "fid": fid,
            "versions": json.loads(tool_versions("torch", "onnxruntime")),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def _cell(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"


def markdown(report: dict) -> str:
    net = report["loss_network"]
    lines = [
        f"Style `{report['style_image']}`, {len(report['contents'])} photo(s) at long side {report['size']} px. "
        f"Losses from {net['name']} ({net['weights']}): content loss at {net['content_layer']} = {net['content_loss']}; "
        f"style loss at {', '.join(net['style_layers'])} = {net['style_loss']}. SSIM and PSNR are against the photo. "
        "Time per image: measured by evaluate for ONNX models, else from each output's sidecar.",
        "",
        "| method | content loss | style loss | SSIM vs content | PSNR vs content (dB) | s / image |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["summary"]:
        lines.append(f"| {row['method']} | {_cell(row['content_loss'])} | {_cell(row['style_loss'])} | "
                     f"{row['ssim']:.3f} | {row['psnr']:.1f} | {_cell(row['seconds_per_image'])} |")
    fid = report["fid"]
    if isinstance(fid, dict):
        values = ", ".join(f"{name} {value:.1f}" for name, value in fid["values"].items())
        lines += ["", f"FID ({fid['weights']}, {fid['images_per_method']} images per method vs {fid['reference_images']} "
                      f"reference images; {fid['note']}): {values}.", ""]
    else:
        lines += ["", f"FID: {fid}.", ""]
    return "\n".join(lines)
