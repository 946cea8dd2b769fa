"""Each setting is declared once: the training settings' fields are `stylecast train`'s options, a preset's keys and
the Trainer's config; the int8 settings' fields are `stylecast export`'s int8 options. Fast: nothing trains."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from stylecast.cli import app
from stylecast.export.precisions import Int8Settings
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.params import cli_fields, field_default
from stylecast.train.presets import LOSS_KEYS, resolve
from stylecast.train.settings import FIELDS, TrainSettings

DATA = Path(__file__).parent / "data"


def _command(name: str):  # noqa: ANN202 - the click command `stylecast <name>` runs
    return typer.main.get_command(app).get_command(None, name)


def _flags(param) -> set[str]:  # noqa: ANN001
    return {*param.opts, *param.secondary_opts}


@pytest.fixture
def trained(monkeypatch, tmp_path):
    """Runs `stylecast train ARGS` in this process with the Trainer replaced: returns the config it was given."""
    import stylecast.train.trainer as trainer

    seen = []

    class Capture:
        def __init__(self, config) -> None:  # noqa: ANN001
            seen.append(config)

        def run(self, resume: bool = False) -> Path:
            return seen[-1].out

    monkeypatch.setattr(trainer, "Trainer", Capture)
    monkeypatch.setattr(trainer, "pick_device", lambda name: __import__("torch").device("cpu"))

    def train(style: str, *args: str):  # noqa: ANN202
        result = CliRunner().invoke(app, ["train", "--style", style, "--data", str(DATA / "photos"), "--style-image",
                                          str(DATA / "style.jpg"), "--styles-dir", str(tmp_path), *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        return seen[-1]
    return train


def test_every_setting_is_a_train_option_with_the_fields_default(trained):
    params = {p.name: p for p in _command("train").params}
    options = cli_fields(TrainSettings)
    assert [f.name for f in options] == [n for n in params if n in FIELDS]  # in the dataclass's order
    assert set(FIELDS) - {f.name for f in options} == {"image"}  # the preset-only key
    for field in options:
        flags = _flags(params[field.name])
        assert f"--{field.name.replace('_', '-')}" in flags, field.name
        assert params[field.name].default is None  # not given: the preset's value, else the field's default
    config = trained("nopreset")  # no styles/nopreset.toml: every setting is the field's default
    for field in options:
        assert getattr(config, field.name) == field_default(field), field.name
    assert config.arch == TrainSettings().arch_config() and config.loss == TrainSettings().loss_weights()
    assert config.exclude_list is None  # the default held-out list, absent from this styles folder
    shown = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"}).output
    assert all(f"--{f.name.replace('_', '-')} " in shown for f in options)


def test_a_preset_key_that_is_not_a_setting_is_refused(tmp_path, trained):
    (tmp_path / "typo.toml").write_text("crop_size = 192\n")
    with pytest.raises(StylecastError, match=r"unknown key\(s\) \['crop_size'\]; known: \[") as refused:
        trained("typo")
    assert str(sorted(FIELDS)) in str(refused.value)  # the known keys are the dataclass's fields
    (tmp_path / "image.toml").write_text('[cuda]\nimage = "other.jpg"\n')
    with pytest.raises(StylecastError, match=r"cuda\.image"):  # the painting is the style's on every device
        resolve("image", tmp_path, {})
    (tmp_path / "bad.toml").write_text("compile = 1\n")
    with pytest.raises(StylecastError, match="compile = 1 should be like False"):  # the field's type
        trained("bad")
    assert set(LOSS_KEYS) <= set(FIELDS)


def test_the_command_line_overrides_the_preset(tmp_path, trained, monkeypatch):
    (tmp_path / "s.toml").write_text('crop = 192\nsteps = 7\nscale = [160, 320]\ncompile = true\nlr = 1\n'
                                     'image = "painting.jpg"\nexclude = ""\n')
    from_preset = trained("s")
    assert (from_preset.crop, from_preset.steps, from_preset.scale, from_preset.compile) == (192, 7, [160, 320], True)
    assert from_preset.lr == 1.0 and isinstance(from_preset.lr, float) and from_preset.exclude_list is None
    (tmp_path / "held.sha256").write_text("")
    monkeypatch.chdir(tmp_path)
    given = trained("s", "--crop", "64", "--scale", "40,60", "--no-compile", "--exclude", "held.sha256", "--lr", "0.5")
    assert (given.crop, given.steps, given.scale, given.compile, given.lr) == (64, 7, [40, 60], False, 0.5)
    assert given.exclude == str(tmp_path / "held.sha256") and given.exclude_list == tmp_path / "held.sha256"
    assert resolve("s", tmp_path, {"crop": None})["image"] == "painting.jpg"  # None: not given


def test_int8_options_of_export_are_the_int8_settings_fields():
    params = {p.name: p for p in _command("export").params}
    for field in cli_fields(Int8Settings):
        assert params[field.name].default == field_default(field), field.name
    assert {"--calibration-count", "--int8-method", "--int8-fp32-convs", "--calibration-images"} <= {
        flag for p in params.values() for flag in _flags(p)}
    height, width = Int8Settings().size
    assert params["calibration_resolution"].default == f"{width}x{height}"
    off_cli = {f.name for f in dataclasses.fields(Int8Settings)} - {f.name for f in cli_fields(Int8Settings)}
    assert off_cli == {"size", "selection", "target_db"}
