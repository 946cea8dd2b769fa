"""The regression gate: this run's same-run ratios against the baseline of this machine's class.

Only ratios measured within one run are compared (each format's speedup over PyTorch eager fp32
timed in the same interleaved rounds, and its parity with it), so a slower or busier machine
moves numerator and denominator together and cancels out. Ratios do not carry over between
instruction sets, though, so every baseline records the machine class it was measured on
(``stylecast.runtime.machine``) and latency is gated only against a baseline of this class.
Parity floors and "every format runs" hold on any machine and are always checked.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from stylecast.runtime.artifacts import FORMAT_KEY, slug
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import PRECISIONS
from stylecast.runtime.images import atomic_write
from stylecast.runtime.machine import VERSION_KEYS, class_id, describe_class, mismatches

BASELINE_FORMAT = "bench-baseline"
# PSNR above this is float rounding noise: 120 dB and 140 dB are the same "exact" for the gate.
PSNR_CEILING_DB = 90.0
# Relative speedup drop allowed: a real regression (a de-fused graph, a lost kernel) costs more, while
# single-thread same-run ratios move by about ±10% between runs on an unchanged tree (README, "The gate").
DEFAULT_TOLERANCE = {"speedup_rel": 0.3, "psnr_db": 6.0, "ssim": 0.01}


@dataclass(frozen=True)
class Problem:
    key: str
    kind: str  # missing | status | speedup | psnr | ssim
    text: str

    def __str__(self) -> str:
        return f"{self.key}: {self.text}"


def row_key(row: dict) -> str:
    return "/".join(str(row[k]) for k in ("variant", "resolution", "format", "precision", "engine"))


def make_baseline(result: dict, tolerance: dict[str, float]) -> dict:
    """Figures of every row that ran, the machine class they hold for, and the tolerances the gate allows."""
    rows = {}
    for row in result["rows"]:
        if row["status"] != "ok" or row.get("speedup") is None:
            continue
        rows[row_key(row)] = {"speedup": row["speedup"], "psnr_min": row.get("psnr_min"), "ssim_min": row.get("ssim_min")}
    return {FORMAT_KEY: BASELINE_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine_class": result["machine"]["fingerprint"],
            "measured_on": {"cpu": result["machine"]["cpu"], "versions": result["machine"]["versions"],
                            "settings": result["settings"], "variants": result.get("variants", [])},
            "tolerance": tolerance, "rows": rows}


def baseline_file(folder: Path, fingerprint: dict) -> Path:
    """``cpu-quick-<cpu>-<class id>.json``: one file per machine class, side by side in ``folder``."""
    return Path(folder) / f"cpu-quick-{slug(str(fingerprint.get('cpu', 'cpu')))}-{class_id(fingerprint)}.json"


def save_baseline(baseline: dict, dest: Path) -> Path:
    """Write to ``dest``, or into the folder ``dest`` under this machine class's own name."""
    if dest.is_dir():
        dest = baseline_file(dest, baseline["machine_class"])
    atomic_write(dest, lambda tmp: tmp.write_text(json.dumps(baseline, indent=2) + "\n"))
    return dest


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


def select_baseline(folder: Path, fingerprint: dict) -> tuple[Path | None, list[str]]:
    """The baseline in ``folder`` recorded on this machine class (the most specific if several), and
    one line per baseline passed over, saying why."""
    matching, passed_over = [], []
    for path in sorted(Path(folder).glob("*.json")):
        recorded = load_baseline(path).get("machine_class")
        if not isinstance(recorded, dict):
            passed_over.append(f"{path.name}: records no machine class; re-create it with `make bench-baseline`")
            continue
        differs = mismatches(recorded, fingerprint)
        if differs:
            passed_over.append(f"{path.name}: {describe_class(recorded)}; differs in {', '.join(differs)}")
        else:
            matching.append((sum(v is not None for v in recorded.values()), path))
    return (max(matching)[1] if matching else None), passed_over


def version_notes(baseline: dict, fingerprint: dict) -> list[str]:
    """Library versions that differ from the baseline's: still gated (a slower release is a regression)."""
    return mismatches(baseline.get("machine_class") or {}, fingerprint, VERSION_KEYS)


def comparable(baseline: dict, result: dict) -> tuple[dict, list[str]]:
    """The baseline without the models whose architecture changed since it was timed, and a line for each.

    A retrained model of another width has other speedups by design, not by regression: its rows wait for a
    new baseline (``make bench-baseline``) instead of failing or passing against another net's figures.
    """
    timed = {v.get("name"): v.get("arch") for v in baseline.get("measured_on", {}).get("variants", [])}
    changed = {v["name"]: (timed[v["name"]], v.get("arch")) for v in result.get("variants", [])
               if v["name"] in timed and timed[v["name"]] != v.get("arch")}
    rows = {key: want for key, want in baseline["rows"].items() if key.split("/")[0] not in changed}
    lines = [f"{name}: the baseline timed architecture {_arch_text(was)}, this run {_arch_text(now)}"
             for name, (was, now) in changed.items()]
    return {**baseline, "rows": rows}, lines


def _arch_text(arch: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((arch or {}).items())) or "unrecorded"


def _capped(psnr: float | None) -> float:
    return min(psnr if psnr is not None else 0.0, PSNR_CEILING_DB)


def check_floors(result: dict) -> list[Problem]:
    """What holds on any machine: no row fails to run, and every row meets its precision's parity floor."""
    problems = []
    for row in result["rows"]:
        key = row_key(row)
        if row["status"].startswith("error"):
            problems.append(Problem(key, "status", row["status"]))
        if row["status"] != "ok" or row.get("psnr_min") is None:
            continue
        row_precision = PRECISIONS.get(row["precision"])  # the floors of the table, on any machine
        floor_db = row_precision.psnr_floor_db if row_precision else 0.0
        floor_ssim = row_precision.ssim_floor if row_precision else 0.0
        if row["psnr_min"] < floor_db:
            problems.append(Problem(key, "psnr", f"PSNR {row['psnr_min']} dB < the {row['precision']} floor {floor_db} dB"))
        if (row.get("ssim_min") or 0.0) < floor_ssim:
            problems.append(Problem(key, "ssim", f"SSIM {row.get('ssim_min')} < the {row['precision']} floor {floor_ssim}"))
    return problems


def check(result: dict, baseline: dict) -> list[Problem]:
    """Against a baseline: a row gone or failing, a speedup or parity figure below tolerance."""
    tol = {**DEFAULT_TOLERANCE, **baseline.get("tolerance", {})}
    current = {row_key(row): row for row in result["rows"]}
    problems = []
    for key, want in baseline["rows"].items():
        row = current.get(key)
        if row is None:
            problems.append(Problem(key, "missing", "not measured in this run (the baseline was made with "
                                                    f"{baseline['measured_on']['settings'].get('resolutions')})"))
            continue
        if row["status"] != "ok":
            problems.append(Problem(key, "status", row["status"]))
            continue
        floor = want["speedup"] * (1 - tol["speedup_rel"])
        if row.get("speedup") is None or row["speedup"] < floor:
            problems.append(Problem(key, "speedup", f"speedup {row.get('speedup')}x < {floor:.2f}x "
                                                    f"(baseline {want['speedup']:.2f}x - {tol['speedup_rel']:.0%})"))
        if want.get("psnr_min") is not None and _capped(row.get("psnr_min")) < _capped(want["psnr_min"]) - tol["psnr_db"]:
            problems.append(Problem(key, "psnr", f"PSNR {row.get('psnr_min')} dB < "
                                                 f"{_capped(want['psnr_min']) - tol['psnr_db']:.1f} dB "
                                                 f"(baseline {want['psnr_min']} - {tol['psnr_db']} dB)"))
        if want.get("ssim_min") is not None and (row.get("ssim_min") or 0.0) < want["ssim_min"] - tol["ssim"]:
            problems.append(Problem(key, "ssim", f"SSIM {row.get('ssim_min')} < {want['ssim_min'] - tol['ssim']:.4f} "
                                                 f"(baseline {want['ssim_min']} - {tol['ssim']})"))
    return problems


def keep_fastest(result: dict, again: dict) -> dict:
    """``result`` with each row replaced by its re-measurement where that ran faster relative to eager.

    A round descheduled by a neighbour only ever makes a format look slower, so the best of two
    independent same-run ratios is the robust one; a real regression is slow in both.
    """
    better = {row_key(r): r for r in again["rows"] if r["status"] == "ok" and r.get("speedup") is not None}
    rows = []
    for row in result["rows"]:
        other = better.get(row_key(row))
        if other is not None and other["speedup"] > (row.get("speedup") or 0.0):
            row = {**other, "remeasured": True}
        rows.append(row)
    return {**result, "rows": rows}
