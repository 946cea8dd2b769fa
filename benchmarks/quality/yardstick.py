"""The quality yardstick: a model's loss relative to Gatys optimisation of the *same* loss.

Gatys (L-BFGS from the photo) is run once per style, loss convention and held-out photo, and its loss is kept at
checkpoints (``CHECKPOINTS``) next to the results, keyed by the style image, the loss settings and the photo
(content hashes). A model is then scored in seconds: its total loss over the best 8-bit result of the converged
optimisation (``ratio``), its style term over that result's (``style_ratio``: how strongly it paints the
style), the iterations Gatys needs to do as well (``matches_after``), and the border measure.

Two conventions: ``project``, the style's own training loss (``styles/<style>.toml``), and ``examples``, the
pytorch/examples fast_neural_style loss users compare with (VGG16, content relu2_2 x 1e5, style Gram/(c*h*w) at
relu1_2..relu4_3 x 1e10, no TV, style image at its own size). Both score 256x256 centre crops, RGB in [0, 1] with
ImageNet normalisation (the VGG16 weights' convention).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from stylecast.benchmarks.quality.flicker import still_flicker
from stylecast.runtime.artifacts import sha256_file, tool_versions
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import atomic_write, fit, load_image, save_image
from stylecast.runtime.metrics import border_ratio
from stylecast.train.data import load_style_image, read_hash_list
from stylecast.train.gatys import pixels
from stylecast.train.gatys.optimize import to_rgb, to_tensor
from stylecast.train.losses import LossWeights, PerceptualLoss
from stylecast.train.presets import loss_weights, resolve
from stylecast.train.vgg import VGGFeatures, load_loss_net

CROP = 256
STEPS = 300
CHECKPOINTS = (0, 5, 10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 250, 300)  # 0: the photo itself
BAND = 8  # px, the border measure's outer band
REFERENCE_FORMAT = "gatys-reference"
Stylize = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Convention:
    """One loss that a model and its Gatys reference are both measured with."""

    name: str
    weights: LossWeights
    style_size: int | None  # long side of the style image for its Gram targets; None: the painting's own size

    def settings(self) -> dict:
        return {"name": self.name, "weights": self.weights.as_dict(), "style_size": self.style_size}


def conventions(settings: dict) -> list[Convention]:
    """The style's training loss (without its training-only edge margin) and the pytorch/examples loss."""
    project = replace(loss_weights(settings), edge_margin=0)
    return [Convention("project", project, settings["style_size"]),
            Convention("examples", LossWeights(content=1e5, style=1e10, tv=0.0), None)]


def heldout_photos(folder: Path, hash_list: Path) -> list[Path]:
    """The photos of ``folder`` whose content hash is listed, in the list's order; all must be there."""
    wanted = read_hash_list(hash_list)
    found = {sha256_file(p): p for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}
    missing = [name or digest[:16] for digest, name in wanted.items() if digest not in found]
    if missing:
        raise StylecastError(f"{folder}: held-out photo(s) {missing} of {hash_list} not found there; pass --photos DIR")
    return [found[digest] for digest in wanted]


def crop_photo(path: Path, size: int = CROP) -> np.ndarray:
    """The square centre crop (256 px: the yardstick's) every score and reference is computed on."""
    return fit(load_image(path).rgb, size, size)


@dataclass
class Yardstick:
    """The losses of one style, the held-out photos, and where the reference lives."""

    style_image: Path
    photos: list[Path]
    conventions: list[Convention]
    vgg: VGGFeatures
    reference_dir: Path
    steps: int = STEPS
    crop: int = CROP
    device: str = "cpu"  # where the reference is optimised (CUDA: minutes instead of CPU-hours)

    def __post_init__(self) -> None:
        self.style_sha = sha256_file(self.style_image)
        self.checkpoints = sorted({c for c in CHECKPOINTS if c <= self.steps} | {self.steps})
        self.vgg = self.vgg.to(self.device)
        self.losses = {c.name: PerceptualLoss(self.vgg, load_style_image(self.style_image, c.style_size).to(self.device),
                                              c.weights) for c in self.conventions}
        self.crops = {p: crop_photo(p, self.crop) for p in self.photos}
        self.photo_sha = {p: sha256_file(p) for p in self.photos}

    def key(self, convention: Convention) -> str:
        """Names the reference: anything that changes the optimised loss or the iterations makes a new one."""
        what = {"convention": convention.settings(), "style_sha256": self.style_sha, "crop": self.crop,
                "steps": self.steps, "checkpoints": self.checkpoints, "loss_net": getattr(self.vgg, "net_id", ""),
                "optimizer": pixels.settings()}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]

    def reference_path(self, convention: Convention, photo: Path) -> Path:
        return self.reference_dir / f"{convention.name}-{self.key(convention)}" / f"{self.photo_sha[photo][:16]}.json"

    def terms(self, convention: Convention, photo: Path, rgb: np.ndarray) -> dict[str, float]:
        """The weighted loss terms of an 8-bit result, as a shipped model's output is scored."""
        with torch.no_grad():
            values = self.losses[convention.name](self.tensor(rgb), self.tensor(self.crops[photo]))
        return {k: float(v) for k, v in values.items()}

    def tensor(self, rgb: np.ndarray) -> torch.Tensor:
        return to_tensor(rgb).to(self.device)

    def missing(self) -> list[tuple[Convention, Path]]:
        return [(c, p) for c in self.conventions for p in self.photos if not self.reference_path(c, p).is_file()]

    def reference(self, convention: Convention, photo: Path) -> dict:
        path = self.reference_path(convention, photo)
        if not path.is_file():
            raise StylecastError(f"no Gatys reference for {photo.name} ({convention.name} loss) in {self.reference_dir}; "
                                 "compute it first: stylecast quality-reference (make quality does)")
        return json.loads(path.read_text())


def compute_reference(ys: Yardstick, convention: Convention, photo: Path,
                      on_step: Callable[[int], None] = lambda _: None) -> dict:
    """L-BFGS from the photo on the convention's own loss; its 8-bit result scored at each checkpoint, written
    atomically (one file per photo: an interrupted computation resumes with the next missing photo)."""
    loss, content = ys.losses[convention.name], ys.tensor(ys.crops[photo])
    image = content.clone().requires_grad_(True)
    marks = {"0": ys.terms(convention, photo, ys.crops[photo])}
    # Relative to the photo's loss: the same minimum at the O(1) scale of Gatys' relative losses, where L-BFGS's
    # fixed thresholds (its first step, the curvature test y.s > 1e-10) mean the same on every photo.
    scale = marks["0"]["total"]
    optimizer = pixels.PixelOptimizer(image, lambda x: {"total": loss(x, content)["total"] / scale})
    curve, cpu_start, tic = [], time.process_time(), time.perf_counter()
    for step in range(1, ys.steps + 1):
        curve.append(optimizer.step()["total"] * scale)  # the float loss after each iteration
        if step in ys.checkpoints:
            marks[str(step)] = ys.terms(convention, photo, to_rgb(image))
        on_step(step)
    result = to_rgb(image)
    record = {
        "format": REFERENCE_FORMAT, "convention": convention.settings(), "key": ys.key(convention),
        "photo": photo.name, "photo_sha256": ys.photo_sha[photo], "style_image": ys.style_image.name,
        "style_sha256": ys.style_sha, "loss_net": getattr(ys.vgg, "net_id", ""), "crop": ys.crop, "steps": ys.steps,
        "checkpoints": marks, "curve": [round(v, 2) for v in curve], "border_ratio": border_ratio(result, BAND),
        "optimizer": pixels.settings(), "evaluations": optimizer.evaluations, "restarts": optimizer.restarts,
        "cpu_seconds": round(time.process_time() - cpu_start, 1), "seconds": round(time.perf_counter() - tic, 1),
        "device": ys.device, "threads": torch.get_num_threads(), "versions": json.loads(tool_versions("torch")),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = ys.reference_path(convention, photo)
    save_image(path.with_suffix(".png"), result)  # for contact sheets; not committed (see .gitignore)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    return record


def best_result(reference: dict) -> tuple[int, dict]:
    """The iteration and terms of the optimisation's best 8-bit result: the reference a model is measured against.
    L-BFGS's float loss falls to the end, but the 8-bit image of a late iterate can score a little worse than an
    earlier one (by a few per cent on wave's photos); the best is the stricter reference."""
    step, terms = min(((int(n), t) for n, t in reference["checkpoints"].items()), key=lambda item: item[1]["total"])
    return step, terms


def matches_after(reference: dict, total: float) -> int | None:
    """The fewest checkpointed Gatys iterations whose loss is at most ``total``; None: not within the run."""
    done = sorted((int(n), terms["total"]) for n, terms in reference["checkpoints"].items())
    return next((n for n, value in done if value <= total), None)


def _spread(values: list[float]) -> dict:
    return {"median": float(np.median(values)), "min": float(min(values)), "max": float(max(values))}


def score(ys: Yardstick, stylize: Stylize) -> dict:
    """Every held-out photo through ``stylize`` (HxWx3 uint8 -> same), scored under each convention."""
    rows, outputs = [], {}
    for photo in ys.photos:
        out = stylize(ys.crops[photo])
        if out.shape != ys.crops[photo].shape:
            raise StylecastError(f"the model returned {out.shape} for a {ys.crops[photo].shape} photo")
        outputs[photo] = out
        row = {"photo": photo.name, "border_ratio": border_ratio(out, BAND),
               "photo_border_ratio": border_ratio(ys.crops[photo], BAND)}
        for convention in ys.conventions:
            reference = ys.reference(convention, photo)
            best_step, best = best_result(reference)
            terms = ys.terms(convention, photo, out)
            row[convention.name] = {**terms, "gatys": best, "gatys_best_after": best_step,
                                    "ratio": terms["total"] / best["total"],
                                    # how strongly the style is painted, which the total can hide
                                    "style_ratio": terms["style"] / best["style"],
                                    "matches_after": matches_after(reference, terms["total"]),
                                    "gatys_border_ratio": reference["border_ratio"]}
        rows.append(row)
    summary = {}
    for convention in ys.conventions:
        mine = [row[convention.name] for row in rows]
        after = [m["matches_after"] if m["matches_after"] is not None else ys.steps + 1 for m in mine]
        median_after = float(np.median(after))
        summary[convention.name] = {
            "ratio": _spread([m["ratio"] for m in mine]),
            "style_ratio": _spread([m["style_ratio"] for m in mine]),
            "matches_after_median": f"{median_after:g}" if median_after <= ys.steps else f">{ys.steps}",
            "gatys_border_ratio": float(np.median([m["gatys_border_ratio"] for m in mine])),
        }
    summary["border_ratio"] = _spread([row["border_ratio"] for row in rows])
    summary["photo_border_ratio"] = float(np.median([row["photo_border_ratio"] for row in rows]))
    first = ys.photos[0]  # the still clip is of the first held-out photo, whole (not the scored crop)
    summary["flicker"] = {**still_flicker(stylize, load_image(first).rgb), "photo": first.name}
    return {"summary": summary, "photos": rows, "outputs": outputs}


def report_dict(ys: Yardstick, scored: dict, model: Path, model_meta: dict, extra: dict) -> dict:
    return {
        "model": str(model), "model_sha256": sha256_file(model), "trained_steps": model_meta.get("steps"),
        "excluded_photos": model_meta.get("excluded_photos"), "init": model_meta.get("init"),
        "train_cpu_seconds": model_meta.get("cpu_seconds"),
        "train_compile_cpu_seconds": model_meta.get("compile_cpu_seconds"),
        "train_precision": model_meta.get("train_precision"), "style_image": ys.style_image.name,
        "style_sha256": ys.style_sha, "crop": ys.crop, "gatys_steps": ys.steps, "band_px": BAND,
        "loss_net": getattr(ys.vgg, "net_id", ""), "conventions": [c.settings() for c in ys.conventions],
        "reference_keys": {c.name: ys.key(c) for c in ys.conventions}, **extra,
        "summary": scored["summary"], "photos": scored["photos"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def flicker_line(flicker: dict) -> str:
    ratio = flicker["ratio"]
    if ratio is None:
        shown = "n/a"
    else:
        shown = f"{ratio:.2f} ({'meets' if ratio <= flicker['target'] else 'misses'} the ≤{flicker['target']:g} target)"
    return (f"Still-camera flicker ratio: {shown}: output change {flicker['output_mean_abs_diff']} grey levels per "
            f"frame against {flicker['input_mean_abs_diff']} for the input, over {flicker['frames']} frames of a "
            f"{flicker['size']} H.264 clip of {flicker['photo']} where only sensor noise moves (as `make bench-video`'s "
            "still clip)." + _runtime_text(flicker) + _gains_text(flicker.get("noise_gains")))


def _runtime_text(flicker: dict) -> str:
    """The same clip through ``stylize --temporal-blend`` and ``--input-hold``; older reports lack one or both."""
    shown = [f" With the runtime's `--{option.replace('_', '-')} {figure[option]:g}`: {figure['ratio']:.2f}."
             for key, option in (("blended", "temporal_blend"), ("held", "input_hold"))
             if (figure := flicker.get(key)) and figure["ratio"] is not None]
    return "".join(shown)


def _gains_text(gains: dict | None) -> str:
    """The net's gain to each stability-term noise kind (reports made before it was measured have none)."""
    if not gains:
        return ""
    shown = ", ".join(f"{kind} {gain:.2f}" if gain is not None else f"{kind} none (no change on this frame)"
                      for kind, gain in gains.items())
    return (f" Gain to small input changes (mean output change over input change on the clip's first frame, for "
            f"each `--stability-noise` kind): {shown}.")


def _after(value: int | None, steps: int) -> str:
    return f">{steps}" if value is None else str(value)


def _heldout_note(excluded: str | None) -> str:
    """Whether the model's own metadata says it never saw the held-out photos (trained with an exclusion list)."""
    if excluded and excluded != "none":
        return f"never trained on: its training excluded {excluded}"
    return ("**this model may have trained on them**: its metadata records no exclusion list, so the figures "
            "flatter it")


def markdown(report: dict) -> str:
    s = report["summary"]
    of = f", style `{report['style']}`" if report.get("model_styles") else ""  # one style of a multi-style model
    lines = [f"# Quality of `{Path(report['model']).name}`{of} ({report['style_image']})", "",
             f"{len(report['photos'])} held-out photos ({_heldout_note(report.get('excluded_photos'))}), "
             f"{report['crop']}x{report['crop']} centre "
             f"crops. Ratio: the model's total loss over the best that Gatys L-BFGS from the photo reaches in "
             f"{report['gatys_steps']} iterations on the same loss (1.0 = as good as the converged optimisation); "
             "matches after: the fewest Gatys iterations that do as well. Border: mean gradient magnitude in the "
             f"outer {report['band_px']} px over the interior's.", "",
             "Style term over Gatys: the model's style loss term over that of the same Gatys result (1.0 = as close "
             "to the painting's textures as Gatys; higher: less of the style).", "",
             "| loss | ratio median | ratio range | Gatys matches after (median) | style term over Gatys (median) |",
             "|---|---:|---:|---:|---:|"]
    for c in report["conventions"]:
        r = s[c["name"]]
        lines.append(f"| {c['name']} | {r['ratio']['median']:.2f} | {r['ratio']['min']:.2f}–{r['ratio']['max']:.2f} | "
                     f"{r['matches_after_median']} | {r['style_ratio']['median']:.2f} |")
    b = s["border_ratio"]
    lines += ["", f"Border ratio: median {b['median']:.2f} (range {b['min']:.2f}–{b['max']:.2f}); the photos "
              f"{s['photo_border_ratio']:.2f}, Gatys ({report['conventions'][0]['name']} loss) "
              f"{s[report['conventions'][0]['name']]['gatys_border_ratio']:.2f}.", "",
              flicker_line(s["flicker"]), "",
              "| photo | border | " + " | ".join(f"{c['name']} total | Gatys total | ratio | after | style term"
                                                 for c in report["conventions"]) + " |",
              "|---|---:|" + "---:|---:|---:|---:|---:|" * len(report["conventions"])]
    for row in report["photos"]:
        cells = [f"{row[c['name']]['total']:.3g} | {row[c['name']]['gatys']['total']:.3g} | "
                 f"{row[c['name']]['ratio']:.2f} | {_after(row[c['name']]['matches_after'], report['gatys_steps'])} | "
                 f"{row[c['name']]['style_ratio']:.2f}"
                 for c in report["conventions"]]
        lines.append(f"| {row['photo']} | {row['border_ratio']:.2f} | " + " | ".join(cells) + " |")
    lines += ["", f"Model sha256 {report['model_sha256'][:16]}…, trained {report['trained_steps']} steps "
              f"({report['train_cpu_seconds'] or 'unrecorded'} CPU-s"
              f"{', fine-tuned from ' + report['init'] if report.get('init') else ''}); loss net {report['loss_net']}; "
              f"references {report['reference_keys']}.", ""]
    return "\n".join(lines)


def model_stylizer(path: Path, input_pad: int | None = None, style: str | None = None) -> tuple[Stylize, dict]:
    """A checkpoint (run in torch, fp32) or an ONNX export (the runtime) as an image -> image function, with its
    metadata. ``input_pad`` overrides a checkpoint's padding: the runtime-pad remedy, measured without retraining.
    ``style`` is the one style of a multi-style model that is painted (the net fed its one-hot vector)."""
    if path.suffix == ".onnx":
        from stylecast.runtime.stylizer import Stylizer

        if input_pad is not None:
            raise StylecastError("--input-pad applies to .safetensors checkpoints; an export carries its own padding")
        stylizer = Stylizer(path, style=style)
        return stylizer, dict(stylizer.backend.metadata)
    from stylecast.train.checkpoint import load_model
    from stylecast.train.model import TransformerNet, style_vector

    loaded = load_model(path)
    model = loaded.model
    if input_pad is not None:
        config = replace(model.config, input_pad=input_pad)
        model = TransformerNet(config).eval()
        model.load_state_dict(loaded.model.state_dict())
    # a single-style net ignores the vector
    vector = style_vector(loaded.styles, {style or loaded.styles[0]: 1.0})

    def run(rgb: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return to_rgb(model(to_tensor(rgb), vector))

    return run, loaded.meta


def write_report(ys: Yardstick, scored: dict, report: dict, out: Path, style_rgb: np.ndarray) -> None:
    """report.json, report.md and a contact sheet (photo, model, Gatys where its image is on disk)."""
    from stylecast.runtime.gallery import make_gallery

    atomic_write(out / "report.json", lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(markdown(report)))
    first = ys.conventions[0]
    rows = []
    for photo in ys.photos:
        gatys = ys.reference_path(first, photo).with_suffix(".png")
        row = [ys.crops[photo], scored["outputs"][photo]]
        rows.append(tuple([*row, load_image(gatys).rgb] if gatys.is_file() else row))
    make_gallery(rows, out / "contact.jpg", title=f"stylecast quality: {Path(report['model']).name}",
                 style=style_rgb, labels=["photo", "model", f"Gatys {ys.steps} ({first.name} loss)"],
                 height=192, jpeg_quality=80)  # 0.34 MB where 256 px at 88 took 0.71: four styles' sheets in git


def for_style(style: str, styles_dir: Path, photos: Path, heldout: Path, reference_dir: Path | None = None,
              steps: int = STEPS, loss_net_weights: Path | None = None, crop: int = CROP,
              device: str = "cpu", losses: tuple[str, ...] = ("project", "examples")) -> Yardstick:
    """The yardstick of ``style``: its preset's loss (its [yardstick] table where it has one) and painting, the
    held-out photos, VGG16 from the cache."""
    settings = resolve(style, styles_dir, {}, yardstick=True)
    known = conventions(settings)
    chosen = [c for c in known if c.name in losses]
    if not chosen or len(chosen) != len(set(losses)):
        raise StylecastError(f"--losses {','.join(losses)}: choose from {', '.join(c.name for c in known)}")
    layers = [layer for c in chosen for layer in (c.weights.content_layer, *c.weights.style_layers)]
    vgg = load_loss_net("vgg16", layers, "cpu", loss_net_weights)
    style_image = styles_dir / settings["image"]
    if not style_image.is_file():
        raise StylecastError(f"{style_image}: style image of {style!r} not found")
    if steps < 1 or crop < 2 * BAND + 2:
        raise StylecastError(f"--steps {steps} --crop {crop}: at least 1 iteration on crops over {2 * BAND + 2} px")
    return Yardstick(style_image, heldout_photos(photos, heldout), chosen, vgg,
                     reference_dir or Path("benchmarks/results/quality") / style / "gatys-reference", steps, crop,
                     device)
