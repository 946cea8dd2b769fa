"""Loss curves as PNG, drawn from the CSV logs the trainer and optimiser write."""

from __future__ import annotations

import csv
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
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name in series:
        values = [float(r[name]) for r in rows]
        if any(v > 0 for v in values):
            ax.plot(steps, values, label=name, linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("weighted loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(dest, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
