"""Per-style training presets (``styles/<style>.toml``): any field of :class:`TrainSettings`, checked by name and
by the field's type, under the command line's options. One place turns settings into a TrainConfig, for `train` and
`recipe-ab` alike."""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

from stylecast.runtime.errors import StylecastError
from stylecast.train.settings import FIELDS, OPTIONS, Span, TrainSettings

if sys.version_info >= (3, 11):
    import tomllib  # novermin (only reached on 3.11+)
else:  # Python 3.10 (JetPack 6's): the same parser, from PyPI
    import tomli as tomllib  # novermin

TYPES = typing.get_type_hints(TrainSettings)  # the type a value of each setting must have
# A preset's [cuda] table: the settings of a run whose device is a CUDA GPU, over the preset's own (a GPU buys
# in minutes what the CPU recipe rations: larger crops and batches, many more steps). It changes how a style is
# trained, not what it is: the training loss stays the preset's, the same on every device.
CUDA_TABLE = "cuda"
LOSS_KEYS = ("content_weight", "style_weight", "tv_weight", "content_layer", "style_size", "loss_net")
# A preset's [yardstick] table: the loss that `stylecast quality` scores every model of the style under, where it
# differs from the training loss above. Training may weigh the terms otherwise to do better under it (the recipe
# A/B found content 2e5 best under the 1e5 loss), and the ratios stay comparable across recipes and Gatys
# references stay valid.
YARDSTICK_TABLE = "yardstick"
TABLES = (CUDA_TABLE, YARDSTICK_TABLE)


def style_preset(style: str, styles_dir: Path) -> dict:
    """``styles/<style>.toml`` if present (else {}), its keys checked: a typo is an error, not a silent default."""
    preset = styles_dir / f"{style}.toml"
    if not preset.is_file():
        return {}
    try:
        data = tomllib.loads(preset.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise StylecastError(f"{preset}: invalid TOML ({exc}); fix the file or delete it") from exc
    for table in TABLES:
        if not isinstance(data.get(table, {}), dict):
            raise StylecastError(f"{preset}: {table} should be a table ([{table}]) of settings")
    cuda, yardstick = data.get(CUDA_TABLE, {}), data.get(YARDSTICK_TABLE, {})
    unknown = sorted(set(data) - set(FIELDS) - set(TABLES))
    unknown += [f"{CUDA_TABLE}.{key}" for key in sorted(set(cuda) - set(OPTIONS))]
    unknown += [f"{YARDSTICK_TABLE}.{key}" for key in sorted(set(yardstick) - set(LOSS_KEYS))]
    if unknown:
        raise StylecastError(f"{preset}: unknown key(s) {unknown}; known: {sorted(FIELDS)}, "
                             f"[{YARDSTICK_TABLE}] only {list(LOSS_KEYS)}")
    loss = sorted(set(cuda) & set(LOSS_KEYS))
    if loss:
        raise StylecastError(f"{preset}: [{CUDA_TABLE}] sets {loss}; the loss is the style's on every device "
                             "(its quality report scores under it): set them above the table")
    return data


def _checked(key: str, value: Any, source: str) -> Any:
    """``value`` if it has the field's type (an int where a float is expected is fine)."""
    kind = TYPES[key]
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is Span:
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value)
        value = Span(value) if ok else value
    else:
        ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        raise StylecastError(f"{source}: {key} = {value!r} should be like {defaults()[key]!r}")
    return value


def defaults() -> dict[str, Any]:
    """Every setting's default, by name."""
    return dataclasses.asdict(TrainSettings())


def resolve(style: str, styles_dir: Path, given: dict[str, Any], *, cuda: bool = False,
            yardstick: bool = False) -> dict[str, Any]:
    """Every field of TrainSettings by name: the defaults, then the style's preset (and its [cuda] table for a run on a
    CUDA GPU, or its [yardstick] table for the loss models are scored under), then ``given`` (the command line; None:
    not given)."""
    preset = style_preset(style, styles_dir)
    path = str(styles_dir / f"{style}.toml")
    layers = [(path, {k: v for k, v in preset.items() if k not in TABLES})]
    for table, wanted in ((CUDA_TABLE, cuda), (YARDSTICK_TABLE, yardstick)):
        if wanted:
            layers.append((f"{path} [{table}]", preset.get(table, {})))
    merged = defaults()
    for source, values in (*layers, ("options", given)):
        for key, value in values.items():
            if key in FIELDS and value is not None:
                merged[key] = _checked(key, value, source)
    merged["image"] = merged["image"] or f"{style}.jpg"
    return merged


def exclusion_list(settings: dict[str, Any], styles_dir: Path) -> Path | None:
    """The held-out hash list to exclude: the default one only where it exists (a fresh style folder has none)."""
    name = settings["exclude"]
    if not name:
        return None
    path = styles_dir / name
    if path.is_file():
        return path
    if name == TrainSettings.exclude:
        return None
    raise StylecastError(f"exclude = {name!r}: {path} not found; give a sha256 list of photos or \"\" for none")


def loss_weights(settings: dict[str, Any]):  # noqa: ANN201 - LossWeights (torch imported lazily)
    return TrainSettings(**settings).loss_weights()


def painting(settings: dict[str, Any], styles_dir: Path, style_image: Path | None = None,
             hint: str = "pass --style-image PATH") -> Path:
    """The style image ``settings`` (from :func:`resolve`) name, unless the command line gave one; it must exist."""
    style_image = style_image or styles_dir / settings["image"]
    if not style_image.is_file():
        raise StylecastError(f"{style_image}: style image not found; {hint}")
    return style_image


def train_config(style: str, data: Path, styles_dir: Path, settings: dict[str, Any], *, style_image: Path | None = None,
                 out: Path | None = None, run_dir: Path | None = None, loss_net_weights: Path | None = None,
                 init: Path | None = None, config_type: type | None = None, **extra: Any):  # noqa: ANN201
    """The TrainConfig of ``settings`` (from :func:`resolve`), or the ``config_type`` subclass given ``extra``."""
    from stylecast.train.trainer import TrainConfig

    return (config_type or TrainConfig)(
        **settings, style=style, style_image=painting(settings, styles_dir, style_image), data=data,
        out=out or Path("models") / f"{style}.safetensors", run_dir=run_dir or Path("runs") / style,
        loss_net_weights=loss_net_weights, exclude_list=exclusion_list(settings, styles_dir), init=init, **extra)
