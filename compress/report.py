"""The compression report as Markdown: a Pareto table of teacher and students, and the verdict."""

from __future__ import annotations

from stylecast.compress.students import ENGINES, deployed_ms, pareto


def _latency(row: dict, label: str) -> str:
    value, speedup = row["latency_ms"].get(label), row["speedup"].get(label)
    if not isinstance(value, float):
        return "–"
    below = "" if "int8" not in label or row.get("int8_passed", True) else " ⚠"
    return f"{value:.0f} ({speedup:.2f}x){below}" if speedup else f"{value:.0f}{below}"


def _row(name: str, row: dict, selected: str, front: list[str]) -> str:
    g = row["gflops"]
    mark = (" **(slim)**" if name == selected else "") + (" ◆" if name in front else "")
    verdict = ""
    if "meets_target" in row:
        failed = [k for k, ok in row["meets"].items() if not ok]
        verdict = "yes" if row["meets_target"] else "no: " + ", ".join(failed)
    style = f"{row['style_delta']:+.1%}" if "style_delta" in row else "-"
    content = f"{row['content_delta']:+.1%}" if "content_delta" in row else "-"
    ratio = f"{row['flops_ratio']:.2f}x" if "flops_ratio" in row else "1x"
    engines = " | ".join(_latency(row, label) for label, _, _ in ENGINES)
    return (f"| {name}{mark} | {row['method']} ({row['steps']} steps) | {row['params'] / 1e6:.3f} M | "
            f"{g['512']:.1f} / {g['1080p']:.0f} | {ratio} | {engines} | {row['int8_psnr_min']:.1f} | "
            f"{row['psnr']:.1f} | {row['ssim']:.3f} | {style} | {content} | {verdict} |")


def _excluded(report: dict) -> str:
    """What the teacher's training left out, from its metadata ("none": it saw every photo of the folder)."""
    excluded = report.get("teacher_excluded", "none")
    return "no photos (it may have trained on these held-out ones)" if excluded == "none" else excluded


def render_markdown(report: dict) -> str:
    rows = report["models"]
    order = ["teacher", *sorted((k for k in rows if k != "teacher"), key=lambda k: deployed_ms(rows[k]))]
    target, size = report["target"], report["eval_size"]
    front = pareto({k: v for k, v in rows.items() if k != "teacher"})
    engine_heads = " | ".join(f"{label} ms" for label, _, _ in ENGINES)
    lines = [
        f"# {report['slim']}: compression report",
        "",
        f"Teacher `{report['teacher']}` (sha256 {report['teacher_sha256'][:16]}…); selected student: "
        f"**{report['selected']}** → `{report['slim']}`, " + (
            "the fastest on its best deployed engine among those meeting the target." if rows[report["selected"]][
                "meets_target"] else "although no student meets the target: the one meeting most of its checks, "
                                     "then the highest SSIM."),
        f"Target: ≥ {target['flops_ratio']}x fewer FLOPs, SSIM ≥ {target['ssim']} vs the teacher's output and "
        f"style loss within {target['style_delta']:.0%} of the teacher's, on {len(report['held_out'])} held-out "
        f"photos at {size}². Held-out photos were excluded from distillation and int8 calibration; the teacher's "
        f"own training excluded {_excluded(report)}.",
        "",
        f"| model | method | params | GFLOPs {size}² / 1080p | FLOPs cut | {engine_heads} | int8 parity dB | PSNR dB "
        "| SSIM | style loss Δ | content loss Δ | meets target |",
        "|" + "---|" * (11 + len(ENGINES)),
        *[_row(name, rows[name], report["selected"], front) for name in order],
        "",
        f"Latency: {size}², batch 1, {report['plan']['latency_threads']} thread(s), each engine through the "
        "runtime's own backend on the model's exported ONNX (int8: the export's searched QDQ graph), median of "
        "interleaved rounds in one run; (×) = the teacher's time on the same engine / the model's. ⚠: the int8 "
        "export is below its parity floor vs its own fp32 (int8 parity dB: worst over the parity photos), so it "
        "does not count as deployed. ◆: on the Pareto front of deployed latency (the fastest engine that keeps "
        "parity) against SSIM. PSNR and SSIM compare each model's fp32 output with the teacher's. Style and "
        "content losses use the teacher's VGG16 loss network and style Gram targets; Δ is relative to the "
        "teacher's own loss. Regenerate with `make compress STYLE=<style>`.",
        "",
        "![photo | teacher | slim](side-by-side.jpg)",
        "",
    ]
    return "\n".join(lines)
