"""Loss curves as PNG, drawn from the CSV logs the trainer and optimiser write."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

from stylecast.runtime.images import atomic_write


def plot_losses(log_csv: Path, dest: Path, title: str,
                series: tuple[str, ...] = ("content", "style", "tv", "total")) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name in series:
        # A term is blank in rows an --init model logged before this run added it.
        points = [(int(r["step"]), float(r[name])) for r in rows if r.get(name)]
        if any(v > 0 for _, v in points):
            ax.plot(*zip(*points, strict=True), label=name, linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("weighted loss")
    ax.set_title("\n".join(textwrap.wrap(title, 72)))  # a student's title names its architecture: wrap, not clip
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(dest, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
