"""Per-style training presets (``styles/<style>.toml``): any `stylecast train` setting, checked by name and type,
under the command line's options. One place turns settings into a TrainConfig, for `train` and `recipe-ab` alike."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from stylecast.runtime.errors import StylecastError

if sys.version_info >= (3, 11):
    import tomllib  # novermin (only reached on 3.11+)
else:  # Python 3.10 (JetPack 6's): the same parser, from PyPI
    import tomli as tomllib  # novermin

# Every setting with its default; a preset or the command line may set any of them.
DEFAULTS: dict[str, Any] = {
    "steps": 4000, "batch": 4, "crop": 256, "scale": [256, 384], "style_size": 512, "lr": 1e-3, "seed": 0,
    "lr_schedule": "constant", "lr_horizon": 0,
    "content_weight": 1e5, "style_weight": 1e10, "tv_weight": 1e3, "content_layer": "relu2_2", "edge_margin": 0,
    "stability_weight": 0.0, "stability_sigma": 4.0, "stability_noise": "white",
    "stability_loss": "mse",
    "width": 32, "res_blocks": 5, "input_pad": 0,
    "device": "auto", "precision": "auto", "channels_last": False, "compile": False, "workers": 0,
    "checkpoint_every": 200, "log_every": 10, "snapshot_every": 0, "model_weights": "fp16",
    "cpu_budget_s": 0.0,
    "loss_net": "vgg16",
    # Photos never trained on, by content hash (relative to the styles folder); "" trains on every photo.
    "exclude": "heldout.sha256",
}
PRESET_ONLY = ("image",)  # the painting's file name in the styles folder
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
    unknown = sorted(set(data) - set(DEFAULTS) - set(PRESET_ONLY) - set(TABLES))
    unknown += [f"{CUDA_TABLE}.{key}" for key in sorted(set(cuda) - set(DEFAULTS))]
    unknown += [f"{YARDSTICK_TABLE}.{key}" for key in sorted(set(yardstick) - set(LOSS_KEYS))]
    if unknown:
        raise StylecastError(f"{preset}: unknown key(s) {unknown}; known: {sorted([*DEFAULTS, *PRESET_ONLY])}, "
                             f"[{YARDSTICK_TABLE}] only {list(LOSS_KEYS)}")
    loss = sorted(set(cuda) & set(LOSS_KEYS))
    if loss:
        raise StylecastError(f"{preset}: [{CUDA_TABLE}] sets {loss}; the loss is the style's on every device "
                             "(its quality report scores under it): set them above the table")
    return data


def _checked(key: str, value: Any, source: str) -> Any:
    """``value`` if it has the default's type (an int where a float is expected is fine)."""
    default = DEFAULTS[key]
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value)
        value = list(value) if ok else value
    else:
        ok = isinstance(value, type(default)) and not isinstance(value, bool)
    if not ok:
        raise StylecastError(f"{source}: {key} = {value!r} should be like {default!r}")
    return value


def resolve(style: str, styles_dir: Path, given: dict[str, Any], *, cuda: bool = False,
            yardstick: bool = False) -> dict[str, Any]:
    """Defaults, then the style's preset (and its [cuda] table for a run on a CUDA GPU, or its [yardstick] table for
    the loss models are scored under), then ``given`` (the command line; None: not given)."""
    preset = style_preset(style, styles_dir)
    path = str(styles_dir / f"{style}.toml")
    layers = [(path, {k: v for k, v in preset.items() if k not in TABLES})]
    for table, wanted in ((CUDA_TABLE, cuda), (YARDSTICK_TABLE, yardstick)):
        if wanted:
            layers.append((f"{path} [{table}]", preset.get(table, {})))
    merged = dict(DEFAULTS)
    for source, values in (*layers, ("options", given)):
        for key, value in values.items():
            if key in DEFAULTS and value is not None:
                merged[key] = _checked(key, value, source)
    merged["image"] = preset.get("image", f"{style}.jpg")
    return merged


def exclusion_list(settings: dict[str, Any], styles_dir: Path) -> Path | None:
    """The held-out hash list to exclude: the default one only where it exists (a fresh style folder has none)."""
    name = settings["exclude"]
    if not name:
        return None
    path = styles_dir / name
    if path.is_file():
        return path
    if name == DEFAULTS["exclude"]:
        return None
    raise StylecastError(f"exclude = {name!r}: {path} not found; give a sha256 list of photos or \"\" for none")


def loss_weights(settings: dict[str, Any]):  # noqa: ANN201 - LossWeights (torch imported lazily)
    from stylecast.train.losses import LossWeights

    return LossWeights(content=settings["content_weight"], style=settings["style_weight"], tv=settings["tv_weight"],
                       content_layer=settings["content_layer"], edge_margin=settings["edge_margin"])


def train_config(style: str, data: Path, styles_dir: Path, settings: dict[str, Any], *, style_image: Path | None = None,
                 out: Path | None = None, run_dir: Path | None = None, loss_net_weights: Path | None = None,
                 init: Path | None = None):  # noqa: ANN201
    """The TrainConfig of ``settings`` (from :func:`resolve`)."""
    from stylecast.train.model import ArchConfig
    from stylecast.train.trainer import TrainConfig

    style_image = style_image or styles_dir / settings["image"]
    if not style_image.is_file():
        raise StylecastError(f"{style_image}: style image not found; pass --style-image PATH")
    s = settings
    return TrainConfig(
        style=style, style_image=style_image, data=data, out=out or Path("models") / f"{style}.safetensors",
        run_dir=run_dir or Path("runs") / style, steps=s["steps"], batch=s["batch"], crop=s["crop"],
        scale=tuple(s["scale"]), style_size=s["style_size"], lr=s["lr"], seed=s["seed"],
        checkpoint_every=s["checkpoint_every"], log_every=s["log_every"],
        snapshot_every=s["snapshot_every"], model_weights=s["model_weights"], device=s["device"], precision=s["precision"],
        workers=s["workers"], arch=ArchConfig(width=s["width"], res_blocks=s["res_blocks"], input_pad=s["input_pad"]),
        loss=loss_weights(s), loss_net=s["loss_net"], loss_net_weights=loss_net_weights,
        stability_weight=s["stability_weight"], stability_sigma=s["stability_sigma"],
        stability_noise=s["stability_noise"], stability_loss=s["stability_loss"], lr_schedule=s["lr_schedule"],
        lr_horizon=s["lr_horizon"], channels_last=s["channels_last"], compile=s["compile"],
        cpu_budget_s=s["cpu_budget_s"], exclude=exclusion_list(s, styles_dir), init=init,
    )
