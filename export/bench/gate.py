"""The regression gate: this run's same-run ratios against a stored baseline, with tolerances.

Only ratios measured within one run are compared (each format's speedup over PyTorch eager fp32
timed in the same interleaved rounds, and its parity with it), so a slower or busier machine
moves numerator and denominator together and cancels out; absolute milliseconds never gate.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import atomic_write
from stylecast.runtime.metadata import FORMAT_KEY

BASELINE_FORMAT = "bench-baseline"
# PSNR above this is float rounding noise: 120 dB and 140 dB are the same "exact" for the gate.
PSNR_CEILING_DB = 90.0
# Generous on purpose: the gate is for real regressions (a format losing half its advantage over eager,
# an export bug costing 6 dB), not for the run-to-run noise of a shared 2-core machine (about ±15% here).
DEFAULT_TOLERANCE = {"speedup_rel": 0.5, "psnr_db": 6.0, "ssim": 0.01}


def row_key(row: dict) -> str:
    return "/".join(str(row[k]) for k in ("variant", "resolution", "format", "precision", "engine"))


def make_baseline(result: dict, tolerance: dict[str, float]) -> dict:
    """Figures of every row that ran, with the tolerances the gate will allow."""
    rows = {}
    for row in result["rows"]:
        if row["status"] != "ok" or row.get("speedup") is None:
            continue
        rows[row_key(row)] = {"speedup": row["speedup"], "psnr_min": row.get("psnr_min"), "ssim_min": row.get("ssim_min")}
    return {FORMAT_KEY: BASELINE_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "measured_on": {"cpu": result["machine"]["cpu"], "versions": result["machine"]["versions"],
                            "settings": result["settings"], "variants": result.get("variants", [])},
            "tolerance": tolerance, "rows": rows}


def save_baseline(baseline: dict, dest: Path) -> None:
    atomic_write(dest, lambda tmp: tmp.write_text(json.dumps(baseline, indent=2) + "\n"))


def load_baseline(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise StylecastError(f"{path}: no such baseline; create one with `stylecast bench --save-baseline {path}`") from exc
    except (OSError, ValueError) as exc:
        raise StylecastError(f"{path}: not readable JSON ({exc}); re-create it with --save-baseline") from exc
    if not isinstance(data, dict) or data.get(FORMAT_KEY) != BASELINE_FORMAT or not isinstance(data.get("rows"), dict):
        raise StylecastError(f"{path}: not a stylecast bench baseline; create one with `stylecast bench --save-baseline`")
    return data


def _capped(psnr: float | None) -> float:
    return min(psnr if psnr is not None else 0.0, PSNR_CEILING_DB)


def check(result: dict, baseline: dict) -> list[str]:
    """One line per regression: a row gone or failing, a speedup or parity figure below tolerance."""
    tol = {**DEFAULT_TOLERANCE, **baseline.get("tolerance", {})}
    current = {row_key(row): row for row in result["rows"]}
    problems = []
    for key, want in baseline["rows"].items():
        row = current.get(key)
        if row is None:
            problems.append(f"{key}: not measured in this run (the baseline was made with "
                            f"{baseline['measured_on']['settings'].get('resolutions')})")
            continue
        if row["status"] != "ok":
            problems.append(f"{key}: {row['status']}")
            continue
        floor = want["speedup"] * (1 - tol["speedup_rel"])
        if row.get("speedup") is None or row["speedup"] < floor:
            problems.append(f"{key}: speedup {row.get('speedup')}x < {floor:.2f}x "
                            f"(baseline {want['speedup']:.2f}x - {tol['speedup_rel']:.0%})")
        if want.get("psnr_min") is not None and _capped(row.get("psnr_min")) < _capped(want["psnr_min"]) - tol["psnr_db"]:
            problems.append(f"{key}: PSNR {row.get('psnr_min')} dB < {_capped(want['psnr_min']) - tol['psnr_db']:.1f} dB "
                            f"(baseline {want['psnr_min']} - {tol['psnr_db']} dB)")
        if want.get("ssim_min") is not None and (row.get("ssim_min") or 0.0) < want["ssim_min"] - tol["ssim"]:
            problems.append(f"{key}: SSIM {row.get('ssim_min')} < {want['ssim_min'] - tol['ssim']:.4f} "
                            f"(baseline {want['ssim_min']} - {tol['ssim']})")
    return problems
