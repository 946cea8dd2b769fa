"""Temporal stability of stylized video: a flicker figure, and two mitigations.

Frame-by-frame style transfer amplifies small input changes (noise, compression) into visible
flicker. The figure reported is the mean absolute frame-to-frame difference of the output divided
by that of the input: 1.0 means the output changes exactly as much as the input does, higher
means the network adds flicker.

The mitigation, ``--temporal-blend A``, blends each output with the previous (already blended)
output by up to ``A`` where the input did not change, fading to no blending where it did, so static
areas steady down and moving ones do not smear.

The other, ``--input-hold T``, works before the net: an input pixel keeps the value last passed on until it moves
more than ``T`` grey levels from it, so the net sees no change at all where a still camera's codec re-coded a
block by a level or two.
"""

from __future__ import annotations

import numpy as np

from stylecast.runtime.errors import StylecastError

MOTION_SCALE = 24.0  # per-pixel input change (0-255, mean over RGB) at which blending stops entirely
MAX_HOLD = 16.0  # beyond this an input hold would freeze real, low-contrast motion


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


class FlickerMeter:
    """Running mean frame-to-frame differences of input and output (and their ratio)."""

    def __init__(self) -> None:
        self.previous: tuple[np.ndarray, np.ndarray] | None = None
        self.input_sum = self.output_sum = 0.0
        self.pairs = 0

    def add(self, rgb: np.ndarray, stylized: np.ndarray) -> None:
        if self.previous is not None and self.previous[0].shape == rgb.shape:
            self.input_sum += _mean_abs_diff(self.previous[0], rgb)
            self.output_sum += _mean_abs_diff(self.previous[1], stylized)
            self.pairs += 1
        self.previous = (rgb, stylized)

    def summary(self) -> dict[str, float | None]:
        if not self.pairs:
            return {"input_mean_abs_diff": None, "output_mean_abs_diff": None, "ratio": None}
        inp, out = self.input_sum / self.pairs, self.output_sum / self.pairs
        return {"input_mean_abs_diff": round(inp, 4), "output_mean_abs_diff": round(out, 4),
                "ratio": round(out / inp, 4) if inp > 0 else None}


def check_blend(amount: float) -> None:
    if not 0.0 <= amount < 1.0:
        raise StylecastError(f"--temporal-blend {amount} must be in [0, 1) (0 = off, 0.5 = a good start)")


class TemporalBlend:
    """out'_t = w * out'_{t-1} + (1 - w) * out_t, with w = A * max(0, 1 - |in_t - in_{t-1}| / MOTION_SCALE)."""

    def __init__(self, amount: float) -> None:
        check_blend(amount)
        self.amount = amount
        self.previous: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, rgb: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        if self.amount == 0.0:
            return stylized
        if self.previous is None or self.previous[0].shape != rgb.shape:
            blended = stylized.astype(np.float32)
        else:
            change = np.abs(rgb.astype(np.float32) - self.previous[0]).mean(axis=2, keepdims=True)
            weight = self.amount * np.clip(1.0 - change / MOTION_SCALE, 0.0, 1.0)
            blended = weight * self.previous[1] + (1.0 - weight) * stylized
        self.previous = (rgb.astype(np.float32), blended)
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def check_hold(levels: float) -> None:
    if not 0.0 <= levels <= MAX_HOLD:
        raise StylecastError(f"--input-hold {levels} must be in [0, {MAX_HOLD:g}] grey levels (0 = off, 3 = a good "
                             "start)")


class InputHold:
    """A dead band on each input pixel: it passes a new value only when some channel moved more than ``levels``
    from the value it last passed. A still camera's H.264 video changes by a level or two where a block is
    re-coded, and the net multiplies that into flicker; motion moves pixels by tens of levels and passes at once.
    The price is that a slow change (a fade) reaches the net in steps of ``levels``."""

    def __init__(self, levels: float) -> None:
        check_hold(levels)
        self.levels = levels
        self.held: np.ndarray | None = None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.levels == 0.0:
            return rgb
        if self.held is None or self.held.shape != rgb.shape:
            self.held = rgb.copy()
        else:
            moved = np.abs(rgb.astype(np.int16) - self.held).max(axis=2, keepdims=True) > self.levels
            self.held = np.where(moved, rgb, self.held)
        return self.held
