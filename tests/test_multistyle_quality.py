"""The quality yardstick on multi-style models: one report per style, a summary row per style, the style term in
every report, the mean curve over a run's styles, and the one-line refusals; on tiny untrained nets, a random
VGG and Gatys references of 2 iterations on 32 px crops."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image, ImageOps

from stylecast.runtime.artifacts import sha256_file
from stylecast.train.checkpoint import save_model, snapshot_path
from stylecast.train.model import ArchConfig, TransformerNet
from tests.conftest import MULTI_STYLES, run_cli, save_tiny_net
from tests.test_multistyle_train import _random_rows
from tests.test_quality import TINY_PRESET, _tiny_style

REFERENCED = MULTI_STYLES[:2]  # the styles given a Gatys reference; the third has none
STEPS = "2"  # Gatys iterations of the tiny references


@pytest.fixture(scope="module")
def setup(tmp_path_factory, photos, style_image, tiny_vgg) -> dict:
    """A styles folder with a preset and a painting per style of the tiny multi-style net, the held-out list, and
    the references of the first two styles, made by the project's own reference code."""
    from stylecast.benchmarks.quality.yardstick import compute_reference, for_style

    root = tmp_path_factory.mktemp("mq")
    styles, heldout = _tiny_style(root, photos, style_image)
    painting = Image.open(style_image).convert("RGB")
    for name, image in zip(MULTI_STYLES, (painting, ImageOps.mirror(painting), ImageOps.invert(painting)), strict=True):
        image.save(styles / f"{name}.jpg")
        (styles / f"{name}.toml").write_text(TINY_PRESET.replace("style.jpg", f"{name}.jpg"))
    for name in REFERENCED:
        ys = for_style(name, styles, photos, heldout, root / "ref", int(STEPS), tiny_vgg, 32)
        for convention, photo in ys.missing():
            compute_reference(ys, convention, photo)
    common = ["--photos", str(photos), "--styles-dir", str(styles), "--crop", "32", "--steps", STEPS,
              "--reference", str(root / "ref"), "--loss-net-weights", str(tiny_vgg), "--threads", "1"]
    return {"root": root, "styles": styles, "common": common,
            "model": save_tiny_net(root / "models", "trio", len(MULTI_STYLES))}


def _refused(result, *words: str) -> None:
    """A refusal: exit code 2 and one line on stderr that holds ``words``."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_all_styles_get_a_report_each_and_a_summary_row(setup):
    out = setup["root"] / "q"
    done = run_cli("quality", str(setup["model"]), "--style", "all", "--out", str(out), *setup["common"])
    assert done.returncode == 0, done.stderr
    assert "candy: skipped, no Gatys reference for candy" in done.stdout
    assert "make quality-reference STYLE=candy" in done.stdout
    for name in REFERENCED:
        report = json.loads((out / name / "report.json").read_text())
        assert report["style"] == name and report["model_styles"] == MULTI_STYLES
        for loss in ("project", "examples"):
            assert report["summary"][loss]["style_ratio"]["median"] > 0
            assert all(row[loss]["style_ratio"] > 0 for row in report["photos"])
        text = (out / name / "report.md").read_text()
        assert f"style `{name}`" in text and "style term over Gatys (median) |" in text
        assert (out / name / "contact.jpg").is_file()
    assert not (out / "candy").exists()
    styles_painted = [json.loads((out / n / "report.json").read_text())["summary"]["project"]["ratio"]["median"]
                      for n in REFERENCED]
    assert styles_painted[0] != styles_painted[1]  # each style scored with its own vector and reference
    summary = (out / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| style")]
    assert len(rows) == len(MULTI_STYLES)
    assert "| project style term |" in summary
    for name in REFERENCED:
        [row] = [r for r in rows if r.startswith(f"| [{name}]({name}/report.md) |")]
        assert float(row.split(" | ")[2]) > 0  # the project style term
    assert re.search(r"^\| candy \| no reference \(make quality-reference STYLE=candy\) \|", summary, re.M)
    data = json.loads((out / "summary.json").read_text())
    assert [row["style"] for row in data["rows"]] == MULTI_STYLES and data["rows"][2]["summary"] is None


def test_one_style_is_scored_alone_and_bad_choices_are_refused(setup):
    model, common, out = setup["model"], setup["common"], setup["root"] / "one"
    done = run_cli("quality", str(model), "--style", "starry_night", "--out", str(out), *common)
    assert done.returncode == 0, done.stderr
    assert "style term" in done.stdout and (out / "starry_night" / "report.md").is_file()
    assert not (out / "summary.md").exists() and not (out / "wave").exists()
    _refused(run_cli("quality", str(model), *common), "holds 3 styles", "--style NAME|all")
    _refused(run_cli("quality", str(model), "--style", "mosaic", *common), "--style mosaic", "wave, starry_night")
    _refused(run_cli("quality", str(model), "--style", "candy", *common),
             "no Gatys reference for candy", "make quality-reference STYLE=candy")
    solo = save_tiny_net(setup["root"] / "models", "solo")
    _refused(run_cli("quality", str(solo), "--style", "wave", *common), "single-style model of solo")


def test_the_curve_of_a_multi_style_run_is_the_mean_over_its_styles(setup):
    """Snapshots of a two-style run, each with its styles' paintings as a joint run records them."""
    run = setup["root"] / "run"
    shas = json.dumps([sha256_file(setup["styles"] / f"{name}.jpg") for name in REFERENCED])
    for step in (1, 2):
        net = _random_rows(TransformerNet(ArchConfig(width=4, res_blocks=1, styles=2)), seed=step)
        save_model(snapshot_path(run, step), net, {"style": "duo", "styles": json.dumps(REFERENCED), "steps": str(step),
                                                   "cpu_seconds": str(360 * step), "style_image_sha256": shas})
    out = setup["root"] / "curve"
    done = run_cli("quality-curve", str(run), "--style", "all", "--out", str(out), *setup["common"])
    assert done.returncode == 0, done.stderr
    assert "2 snapshots" in done.stdout and "mean project ratio" in done.stdout
    curve = json.loads((out / "mean-curve.json").read_text())
    assert curve["styles"] == REFERENCED and (out / "mean-curve.png").is_file()
    for row in curve["snapshots"]:
        assert row["mean"]["project"] == pytest.approx(sum(r["project"] for r in row["ratios"].values()) / 2)
    assert "| project ratio, mean |" in (out / "mean-curve.md").read_text()
    assert sorted(p.name for p in (run / "snapshots").glob("*.quality.json")) == [
        f"step-000000{step}.{name}.quality.json" for step in (1, 2) for name in sorted(REFERENCED)]
    one = run_cli("quality-curve", str(run), "--style", "wave", "--out", str(setup["root"] / "wave-curve"),
                  *setup["common"])
    assert one.returncode == 0, one.stderr
    assert json.loads((setup["root"] / "wave-curve" / "curve.json").read_text())["style"] == "wave"
    _refused(run_cli("quality-curve", str(run), *setup["common"]), "holds 2 styles", "--style NAME|all")
