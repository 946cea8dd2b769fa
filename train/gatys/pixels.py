"""Optimising an image's pixels, one iteration at a time: Gatys' method and the quality yardstick's reference.

torch's L-BFGS, stepped once per ``.step()`` (so progress, checkpoints and snapshots see every iteration), has two
traps that this class closes:

- With ``max_iter=1`` its default ``max_eval`` (``max_iter * 5 // 4`` = 1) leaves the strong-Wolfe line search no
  evaluation beyond its first trial. A rejected unit step then returns ``t = 0``; the curvature history is unchanged,
  so every later iteration computes the same direction and rejects it again: the optimisation freezes for good (two
  of wave's eight yardstick references froze at iteration 9 and 14, at 0.15-0.2 of the photo's loss; mended, they
  reach 0.09). ``max_eval`` is set so the search can bracket and zoom.
- A direction that still makes no progress (curvature pairs spoilt by rounding) restarts L-BFGS from steepest
  descent: the history is cleared.

Each ``.step()`` of torch's optimisers begins by evaluating the loss where the last one ended; the last evaluation is
cached, so that costs nothing (it halved the reference's evaluations).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

KINDS = ("lbfgs", "adam")
LBFGS_FIRST_STEP = 10.0
LBFGS_HISTORY = 50
LBFGS_LINE_SEARCH = 25  # the most loss evaluations one line search may take
ADAM_LR = 5.0  # grey levels per step
Terms = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def settings(kind: str = "lbfgs", lr: float | None = None) -> dict:
    """What decides the optimiser's path: part of the key of every result computed with it."""
    if kind == "adam":
        return {"kind": kind, "lr": lr or ADAM_LR}
    return {"kind": kind, "history": LBFGS_HISTORY, "line_search": "strong_wolfe", "max_line_search": LBFGS_LINE_SEARCH,
            "first_step": LBFGS_FIRST_STEP, "restart_when_stalled": True}


@dataclass
class _Evaluation:
    pixels: torch.Tensor
    grad: torch.Tensor
    objective: torch.Tensor
    terms: dict[str, float]


class PixelOptimizer:
    """Lowers ``terms(image)["total"]`` by moving the pixels of ``image`` (a leaf tensor); one iteration per step."""

    def __init__(self, image: torch.Tensor, terms: Terms, kind: str = "lbfgs", lr: float | None = None,
                 autocast: AbstractContextManager | None = None) -> None:
        self.image, self.terms, self.kind, self.lr = image, terms, kind, lr
        self.autocast = autocast or nullcontext()
        self.evaluations = 0  # of the loss and its gradient: what an iteration costs
        self.restarts = 0
        self._last: _Evaluation | None = None
        self.optimizer = self._optimizer()

    def _optimizer(self) -> torch.optim.Optimizer:
        if self.kind == "adam":
            return torch.optim.Adam([self.image], lr=self.lr or ADAM_LR)
        # The first iteration's step is lr/|g|_1 (torch's rule): each of n pixels moves by about 1/n of its gradient,
        # a curvature pair hardly above fp32 rounding. lr is FIRST_STEP for that iteration only (step() sets it back
        # to 1, the full quasi-Newton step).
        return torch.optim.LBFGS([self.image], lr=LBFGS_FIRST_STEP, max_iter=1, max_eval=1 + LBFGS_LINE_SEARCH,
                                 history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe",
                                 tolerance_grad=0.0, tolerance_change=0.0)

    def step(self) -> dict[str, float]:
        """One iteration; the loss terms of the image it leaves (evaluated once, and reused by the next step)."""
        before = self.image.detach().clone()
        self.optimizer.step(self._closure)
        if self.kind == "lbfgs":
            if torch.equal(before, self.image.detach()):  # stalled: start again from steepest descent
                self.restarts += 1
                self.optimizer.state.clear()
                self.optimizer.param_groups[0]["lr"] = LBFGS_FIRST_STEP
                self.optimizer.step(self._closure)
            self.optimizer.param_groups[0]["lr"] = 1.0
        else:  # projected steps suit Adam; they would corrupt L-BFGS's curvature pairs
            with torch.no_grad():
                self.image.clamp_(0, 255)
        self._closure()
        assert self._last is not None
        return self._last.terms

    def _closure(self) -> torch.Tensor:
        """The objective and its gradient at the current pixels; the last evaluation is reused where it was made.

        The terms are means, so each pixel's gradient shrinks as the image grows; at 320 px L-BFGS's curvature
        test (y.s > 1e-10) then never passes and it stops moving. Summing over pixels instead (the same minimum)
        keeps the gradients' scale independent of size."""
        pixels = self.image.detach()
        last = self._last
        if last is not None and torch.equal(last.pixels, pixels):
            self.image.grad = last.grad.clone()
            return last.objective
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad(), self.autocast:
            values = self.terms(self.image)
        objective = values["total"] * self.image.numel()
        objective.backward()
        self.evaluations += 1
        assert self.image.grad is not None
        self._last = _Evaluation(pixels.clone(), self.image.grad.clone(), objective.detach(),
                                 {k: float(v.detach()) for k, v in values.items()})
        return self._last.objective
