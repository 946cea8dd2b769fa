"""The pixel optimiser behind Gatys and the yardstick's reference: it never freezes, and each iteration costs one
evaluation of the loss when the quasi-Newton step is taken."""

import torch

from stylecast.train.gatys.pixels import LBFGS_FIRST_STEP, PixelOptimizer


def rosenbrock(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The banana valley on two "pixels", as a mean (PixelOptimizer sums it back over the pixels)."""
    a, b = x.flatten()
    return {"total": ((1 - a) ** 2 + 100 * (b - a * a) ** 2) / x.numel()}


def _start() -> torch.Tensor:
    return torch.tensor([-1.2, 1.0]).reshape(1, 1, 2, 1).requires_grad_(True)


def test_lbfgs_reaches_the_minimum_where_one_trial_per_line_search_freezes():
    """Regression: torch's L-BFGS stepped once per call (max_iter=1) gets max_eval=1, so its line search rejects the
    first trial and returns t=0 with an unchanged history; every later call repeats that and nothing moves. Two of
    wave's eight yardstick references froze like this."""
    frozen = _start()
    plain = torch.optim.LBFGS([frozen], lr=LBFGS_FIRST_STEP, max_iter=1, line_search_fn="strong_wolfe",
                              tolerance_grad=0.0, tolerance_change=0.0)

    def closure() -> torch.Tensor:
        plain.zero_grad()
        value = rosenbrock(frozen)["total"] * 2
        value.backward()
        return value

    for _ in range(20):
        plain.step(closure)
    assert torch.equal(frozen, _start())

    image = _start()
    optimizer = PixelOptimizer(image, rosenbrock)
    losses = [optimizer.step()["total"] for _ in range(60)]
    assert losses[-1] < 1e-8 and torch.allclose(image.flatten(), torch.ones(2), atol=1e-3)
    assert all(later <= earlier for earlier, later in zip(losses, losses[1:], strict=False))  # strong Wolfe: never up


def test_a_stalled_lbfgs_restarts_from_steepest_descent():
    """A history that points uphill (as rounding can leave it) makes torch's L-BFGS stop for good; ours clears it."""
    image = _start()
    optimizer = PixelOptimizer(image, rosenbrock)
    for _ in range(3):
        optimizer.step()
    state = optimizer.optimizer.state[image]
    state.update(old_dirs=[], old_stps=[], ro=[], t=0.0, H_diag=-1.0)  # the next direction is +gradient
    before = optimizer.step()["total"]
    assert optimizer.restarts == 1
    after = optimizer.step()["total"]
    assert after < before and optimizer.restarts == 1  # it moves on, with a fresh history


def test_an_iteration_costs_one_evaluation_when_the_unit_step_is_taken():
    """Each torch .step() starts by evaluating where the last one ended; that evaluation is reused, not repeated."""
    target = torch.linspace(0, 255, 12).reshape(1, 3, 2, 2)
    weights = torch.arange(1.0, 13.0).reshape(1, 3, 2, 2)  # 12 curvatures: a quadratic L-BFGS solves in ~12 steps
    image = torch.zeros_like(target).requires_grad_(True)
    optimizer = PixelOptimizer(image, lambda x: {"total": ((x - target) ** 2 * weights).mean()})
    for _ in range(20):
        optimizer.step()
    assert optimizer.evaluations <= 20 + 4  # the first iterations may search; torch alone would take 40
    assert torch.allclose(image.detach(), target, atol=1e-2)
