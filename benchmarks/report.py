"""The result as JSON, a Markdown table (README-ready) and a latency-vs-quality plot."""

from __future__ import annotations

import json
from pathlib import Path

from stylecast.benchmarks.scoring import EXACT_DB, within_floor
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import atomic_write


def write_results(stem: Path, record: dict, text: str) -> None:
    """A result as ``stem``.json (every figure) and ``stem``.md (the table a reader sees), each written atomically."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(stem.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text(text))

# (header, row key, format) in table order; the same columns in Markdown and on the console.
COLUMNS = [
    ("model", "variant", "{}"), ("res", "resolution", "{}"), ("format", "format", "{}"), ("precision", "precision", "{}"),
    ("engine", "engine", "{}"), ("status", "status", "{}"), ("size MB", "bytes", "mb"), ("params M", "params", "m"),
    ("GFLOPs", "gflops", "{:.1f}"), ("PSNR dB", "psnr_min", "db"), ("SSIM", "ssim_min", "{:.4f}"),
    ("p50 ms", "p50_ms", "{:.1f}"), ("p90 ms", "p90_ms", "{:.1f}"), ("min ms", "min_ms", "{:.1f}"),
    ("img/s", "images_per_s", "{:.2f}"), ("speedup", "speedup", "{:.2f}x"), ("speedup of minima", "speedup_min", "{:.2f}x"),
    ("GFLOP/s", "gflops_per_s", "{:.0f}"), ("% peak", "peak_pct", "peak"),
    ("setup s", "setup_s", "{:.1f}"),
]


# On CUDA the copies and the compute are timed apart; the column appears only when some row has them.
STAGES = ("H2D/compute/D2H ms", "stages", "stages")


def columns(result: dict) -> list[tuple[str, str, str]]:
    return COLUMNS + [STAGES] if any("compute_p50_ms" in r for r in result["rows"]) else COLUMNS


def cell(row: dict, key: str, fmt: str) -> str:
    if key == "stages":
        parts = [row.get(f"{stage}_p50_ms") for stage in ("h2d", "compute", "d2h")]
        return "–" if None in parts else "/".join(f"{p:.2f}" for p in parts)
    value = row.get(key)
    if key == "setup_s" and row.get("load_s") is not None:
        value = row["load_s"] + (row.get("first_call_s") or 0.0)
    if value is None:
        return "–"
    if fmt == "mb":
        return f"{value / 1e6:.1f}"
    if fmt == "m":
        return f"{value / 1e6:.2f}"
    if fmt == "db":
        return "exact" if value >= EXACT_DB else f"{value:.1f}"
    if fmt == "peak":  # the precision whose measured matmul peak the row is held against
        return f"{value:.1f} {row.get('peak', '')}".strip()
    return fmt.format(value)


# A terminal is narrower than a README: the console drops the per-model constants and shortens statuses.
CONSOLE = ("model", "res", "format", "precision", "engine", "status", "PSNR dB", "p50 ms", "min ms", "img/s",
           "speedup", "% peak", "setup s", STAGES[0])


def table_rows(result: dict, headers: tuple[str, ...] | None = None) -> list[list[str]]:
    chosen = [c for c in columns(result) if headers is None or c[0] in headers]
    rows = []
    for row in result["rows"]:
        cells = [cell(row, key, fmt) for _, key, fmt in chosen]
        if headers is not None:
            cells = [c.split(":")[0] if key == "status" else c for c, (_, key, _) in zip(cells, chosen, strict=True)]
        rows.append(cells)
    return rows


def _precision_ratios(rows: list[dict]) -> str:
    """How much faster fp16 and int8 run than fp32 on the same engine, in the same rounds."""
    parts = []
    for fmt, engine in dict.fromkeys((r["format"], r["engine"]) for r in rows if r["format"] != "PyTorch"):
        mine = {r["precision"]: r for r in rows if (r["format"], r["engine"]) == (fmt, engine)}
        gains = [f"{low} {mine['fp32']['p50_ms'] / mine[low]['p50_ms']:.2f}x" for low in ("fp16", "int8")
                 if low in mine and "fp32" in mine]
        if gains:
            parts.append(f"{mine['fp32']['format']} {engine} vs its fp32: {', '.join(gains)}")
    return "".join(f"; {part}" for part in parts)


def _path(row: dict) -> str:
    return f"{row['format']} {row['precision']} {row['engine']}"


def highlights(result: dict) -> list[str]:
    """Per model and resolution: the fastest format within its parity floor (and a faster one below it), which
    PyTorch mode is worth using, and what fp16/int8 gain; then each student's fastest path vs its teacher."""
    lines = []
    for variant, res in dict.fromkeys((r["variant"], r["resolution"]) for r in result["rows"]):
        ran = [r for r in result["rows"] if (r["variant"], r["resolution"]) == (variant, res) and r.get("speedup")]
        if not ran:
            continue
        best = max(ran, key=lambda r: r["speedup"])
        sound = max((r for r in ran if within_floor(r)), key=lambda r: r["speedup"], default=None)
        torch_best = max((r for r in ran if r["format"] == "PyTorch"), key=lambda r: r["speedup"], default=best)
        # A mode slower than eager is never "best": eager (1.00x) is among the candidates, and the slower ones are named.
        slower = [f"{_path(r)} {r['speedup']:.2f}x" for r in ran if r["speedup"] < 1.0]
        fastest = "" if best is sound else (f"fastest {_path(best)} ({best['speedup']:.2f}x, "
                                            f"{cell(best, 'psnr_min', 'db')} dB, below its floor); ")
        fastest += (f"fastest within the parity floor: {_path(sound)} ({sound['speedup']:.2f}x, "
                    f"{cell(sound, 'psnr_min', 'db')} dB)" if sound else "no path within its parity floor")
        lines.append(f"- {variant} {res}: {fastest}; best PyTorch mode: {torch_best['engine']} "
                     f"({torch_best['speedup']:.2f}x){_precision_ratios(ran)}"
                     + (f"; slower than eager: {', '.join(slower)}" if slower else ""))
    return lines + student_lines(result)


def student_lines(result: dict) -> list[str]:
    """Each student's fastest path within the floor against its teacher's eager fp32 at the same resolution.

    The two ran in different cells, so this is a ratio of medians (and of minima, less hit by a busy
    neighbour), not a same-round ratio: it carries the load that changed between the cells."""
    teachers = {Path(v["checkpoint"]).name: v["name"] for v in result.get("variants", [])}
    lines = []
    for student in result.get("variants", []):
        teacher = teachers.get(student.get("teacher") or "")
        for res in dict.fromkeys(r["resolution"] for r in result["rows"]):
            eager = next((r for r in result["rows"] if (r["variant"], r["resolution"], r["format"], r["engine"])
                          == (teacher, res, "PyTorch", "eager") and r.get("p50_ms")), None)
            mine = [r for r in result["rows"] if (r["variant"], r["resolution"]) == (student["name"], res)
                    and r.get("p50_ms") and within_floor(r)]
            if eager is None or not mine:
                continue
            fast = min(mine, key=lambda r: r["p50_ms"])
            lines.append(f"- {student['name']} {res}: fastest path {_path(fast)} {fast['p50_ms']:.1f} ms vs the "
                         f"teacher {teacher}'s eager fp32 {eager['p50_ms']:.1f} ms: {eager['p50_ms'] / fast['p50_ms']:.2f}x "
                         f"(medians; minima {eager['min_ms']:.1f} vs {fast['min_ms']:.1f} ms: "
                         f"{eager['min_ms'] / fast['min_ms']:.2f}x)")
    return lines


def notes(result: dict) -> list[str]:
    """The full reason of every row that did not run, for under the console table."""
    return [f"{row['variant']} {row['resolution']} {row['format']} {row['precision']} {row['engine']}: {row['status']}"
            for row in result["rows"] if row["status"] != "ok"]


def header_lines(result: dict) -> list[str]:
    m, s = result["machine"], result["settings"]
    peaks = ", ".join((f"{k} {v['gflops']:.0f}" + (f" ({v['source']})" if "source" in v else ""))
                      if "gflops" in v else f"{k} none ({v['error'].split(' (')[0]})"
                      for k, v in result["peaks_gflops"].items())
    accel = f", {m['gpu']}" if m.get("gpu") else ""
    policy = s["policy"]
    return [
        f"{m['cpu']}{accel}; {s['threads']} thread(s) of {m['cpu_cores_usable']} usable cores; device {s['device']}; "
        f"batch {s['batch']}; measured {result['created']}.",
        f"Matmul peak GFLOP/s (GOP/s for int8): {peaks}. Baseline: {s['baseline']}; "
        "speedup (quoted) = median over rounds of (eager time / format time) in the same round; speedup of minima = "
        "eager's fastest call / the format's fastest; % peak against the measured peak of the named precision; "
        "parity from the same run.",
        f"Timing: warm-up ≥{policy['warmup_calls']} calls and ≥{policy['warmup_s']} s per format, then "
        f"{policy['min_rounds']}–{policy['max_rounds']} interleaved rounds (≈{policy['budget_s']:.0f} s per model and "
        f"resolution); p50/p90 over rounds; {s['timer']}. Parity: worst PSNR/SSIM over {s['photo_count']} photos "
        f"in {s['photos']} against PyTorch eager fp32.",
    ]


def markdown(result: dict) -> str:
    lines = [*header_lines(result), ""]
    lines.append("| " + " | ".join(h for h, _, _ in columns(result)) + " |")
    lines.append("|" + "|".join("---" for _ in columns(result)) + "|")
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table_rows(result)]
    return "\n".join([*lines, "", *highlights(result)]) + "\n"


def write_json(result: dict, dest: Path) -> None:
    atomic_write(dest, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))


def write_markdown(result: dict, dest: Path) -> None:
    atomic_write(dest, lambda tmp: tmp.write_text(markdown(result)))


README_BLOCK = "bench-results"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def readme_parts(readme: Path, name: str = README_BLOCK) -> tuple[str, str]:
    """The text before the block's start marker and after its end marker; checked before a long run, not after it."""
    start, end = markers(name)
    text = readme.read_text() if readme.is_file() else ""
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise StylecastError(f"{readme}: needs one '{start}' line and, after it, one '{end}' line where the results go")
    head, rest = text.split(start)
    return head, rest.split(end)[1]


def splice_block(readme: Path, name: str, content: str) -> None:
    """Replace what lies between the ``name`` markers of ``readme`` with ``content``, so the figures in the README
    are always those of a run of the command that writes them."""
    head, tail = readme_parts(readme, name)
    start, end = markers(name)
    atomic_write(readme, lambda tmp: tmp.write_text(f"{head}{start}\n{content.rstrip()}\n{end}{tail}"))


def splice_readme(readme: Path, result: dict, image: Path) -> None:
    """The bench's table and plot into the README."""
    link = image.relative_to(readme.parent) if image.is_relative_to(readme.parent) else image
    splice_block(readme, README_BLOCK, f"{markdown(result)}\n![latency vs parity]({link})")


def plot(result: dict, dest: Path, ceiling_db: float = 100.0) -> None:
    """Latency (log x) against worst PSNR vs PyTorch fp32, one panel per resolution.

    PSNR above ``ceiling_db`` is float rounding, so it is drawn at the ceiling.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    resolutions = list(dict.fromkeys(r["resolution"] for r in result["rows"]))
    fig, axes = plt.subplots(1, len(resolutions), figsize=(6 * len(resolutions), 5), squeeze=False)
    colours = {f: f"C{i}" for i, f in enumerate(sorted({r["format"] for r in result["rows"] if r.get("p50_ms")}))}
    markers = dict(zip(dict.fromkeys(r["variant"] for r in result["rows"]), "osD^vP*X", strict=False))
    for ax, res in zip(axes[0], resolutions, strict=True):
        for row in (r for r in result["rows"] if r["resolution"] == res and r.get("p50_ms")):
            quality = min(row.get("psnr_min") or 0.0, ceiling_db)
            ax.scatter(row["p50_ms"], quality, color=colours[row["format"]], marker=markers[row["variant"]], s=40)
            ax.annotate(f"{row['variant']} {row['precision']} {row['engine']}", (row["p50_ms"], quality), fontsize=7,
                        xytext=(5, 3), textcoords="offset points", rotation=25, rotation_mode="anchor")
        ax.set_xscale("log")
        ax.margins(x=0.2, y=0.3)
        ax.set_title(f"{res} (batch 1)")
        ax.set_xlabel("latency p50, ms (log)")
        ax.set_ylabel(f"worst PSNR vs PyTorch fp32, dB (≥{ceiling_db:.0f} = exact)")
        ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=f) for f, c in colours.items()]
    handles += [Line2D([], [], color="grey", marker=m, linestyle="", label=v) for v, m in markers.items()]
    # Below the panels, not in one: the int8 rows sit in a panel's lower left, where a legend would hide them.
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=len(handles))
    fig.suptitle(f"stylecast bench: {result['machine']['cpu']}, {result['settings']['threads']} thread(s)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    atomic_write(dest, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
