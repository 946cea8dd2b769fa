"""The styles of a multi-style net, by name: which row of its style vector each one is, and a user's choice
("wave=0.6,starry_night=0.4" or just "starry_night") turned into that vector. Numpy only, so the runtime, which
never imports torch, reads the same names and weights as training does."""

from __future__ import annotations

import json
import math

import numpy as np

from stylecast.runtime.errors import StylecastError

SEPARATORS = ",="  # a choice is written with these, so no style name may hold them


def check_names(names: list[str], source: str) -> list[str]:
    """``names`` if they can name rows: non-empty, distinct, without a separator or whitespace."""
    bad = [n for n in names if not isinstance(n, str) or not n or any(c in SEPARATORS or c.isspace() for c in n)]
    if bad:
        raise StylecastError(f"{source}: style names {bad!r} are not plain names (no ',', '=' or spaces)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StylecastError(f"{source}: style(s) {repeated} named twice")
    return list(names)


def parse_style_choice(text: str) -> dict[str, float]:
    """``"wave=0.6,starry_night=0.4"`` -> {"wave": 0.6, "starry_night": 0.4}; a bare name weighs 1."""
    choice: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = (part.strip() for part in item.partition("="))
        try:
            weight = float(value) if sep else 1.0
        except ValueError:
            raise StylecastError(f"style {item!r}: the weight after '=' is not a number") from None
        if not math.isfinite(weight):
            raise StylecastError(f"style {item!r}: the weight must be a finite number")
        if name in choice:
            raise StylecastError(f"style {name!r} is given twice in {text!r}")
        choice[name] = weight
    if not choice:
        raise StylecastError(f"style {text!r}: name one style, or a blend like wave=0.6,starry_night=0.4")
    check_names(list(choice), f"style {text!r}")
    return choice


def style_weights(names: list[str], choice: dict[str, float]) -> np.ndarray:
    """The [N] float32 style vector of ``choice`` over a net's styles ``names`` (row order): weights >= 0,
    scaled to sum to 1, so a one-hot row is one style and anything else a blend of them."""
    unknown = sorted(set(choice) - set(names))
    if unknown:
        raise StylecastError(f"unknown style(s) {unknown}; this model has {', '.join(names)}")
    negative = sorted(name for name, weight in choice.items() if weight < 0)
    if negative:
        raise StylecastError(f"style weight(s) of {negative} are negative; a blend takes weights >= 0")
    total = sum(choice.values())
    if total <= 0:
        raise StylecastError("the style weights sum to 0; give at least one style a positive weight")
    return np.array([choice.get(name, 0.0) / total for name in names], dtype=np.float32)


def model_styles(meta: dict[str, str], source: str) -> list[str]:
    """An exported model's styles in the row order of its style input: a multi-style graph's ``styles`` metadata
    (a JSON list), else the model's one ``style``."""
    if "styles" not in meta:
        return [meta.get("style", "unknown")]
    try:
        names = json.loads(meta["styles"])
    except ValueError:
        names = None
    if not isinstance(names, list) or len(names) < 2:
        raise StylecastError(f"{source}: its styles metadata ({meta['styles']!r}) is not a list of two or more "
                             "style names; re-export it with `stylecast export`")
    return check_names(names, source)


def blend_label(names: list[str], weights: np.ndarray) -> str:
    """A short name for the style vector ``weights`` over ``names``, fit for a file name: the one style it paints
    (``starry_night``), or each style of a blend with its percentage (``wave60-starry_night40``)."""
    used = [(name, float(w)) for name, w in zip(names, weights, strict=True) if w > 0]
    if len(used) == 1:
        return used[0][0]
    return "-".join(f"{name}{round(100 * w)}" for name, w in used)
