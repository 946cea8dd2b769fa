"""The compression report as Markdown: a Pareto table of teacher and students, and the verdict."""

from __future__ import annotations


def _row(name: str, row: dict, selected: str) -> str:
    g = row["gflops"]
    mark = " **(slim)**" if name == selected else ""
    verdict = ""
    if "meets_target" in row:
        failed = [k for k, ok in row["meets"].items() if not ok]
        verdict = "yes" if row["meets_target"] else "no: " + ", ".join(failed)
    style = f"{row['style_delta']:+.1%}" if "style_delta" in row else "-"
    content = f"{row['content_delta']:+.1%}" if "content_delta" in row else "-"
    ratio = f"{row['flops_ratio']:.2f}x" if "flops_ratio" in row else "1x"
    return (f"| {name}{mark} | {row['method']} | {row['params'] / 1e6:.3f} M | {g['256']:.1f} / {g['512']:.1f} / "
            f"{g['1080p']:.0f} | {ratio} | {row['latency_ms']:.0f} | {row['speedup']:.2f}x | {row['psnr']:.1f} | "
            f"{row['ssim']:.3f} | {style} | {content} | {verdict} |")


def render_markdown(report: dict) -> str:
    rows = report["models"]
    order = ["teacher", *sorted((k for k in rows if k != "teacher"), key=lambda k: rows[k]["gflops"]["512"])]
    target = report["target"]
    lines = [
        f"# {report['slim']}: compression report",
        "",
        f"Teacher `{report['teacher']}` (sha256 {report['teacher_sha256'][:16]}…); selected student: "
        f"**{report['selected']}** → `{report['slim']}`.",
        f"Target: ≥ {target['flops_ratio']}x fewer FLOPs, SSIM ≥ {target['ssim']} vs the teacher's output and "
        f"style loss within {target['style_delta']:.0%} of the teacher's, on {len(report['held_out'])} held-out "
        f"photos at {report['eval_size']}². Held-out photos were excluded from distillation, but the teacher "
        "itself was trained on all photos of the folder.",
        "",
        "| model | method | params | GFLOPs 256² / 512² / 1080p | FLOPs cut | ORT CPU ms (512²) | speed-up "
        "(same run) | PSNR dB | SSIM | style loss Δ | content loss Δ | meets target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[_row(name, rows[name], report["selected"]) for name in order],
        "",
        "PSNR and SSIM compare each model's output with the teacher's. Style and content losses use the "
        "teacher's VGG16 loss network and style Gram targets; Δ is relative to the teacher's own loss. "
        f"Latency: ONNX Runtime CPU EP, {report['plan']['latency_threads']} thread(s), median of interleaved "
        "rounds in one run. Regenerate with `make compress STYLE=<style>`.",
        "",
        "![photo | teacher | slim](side-by-side.png)",
        "",
    ]
    return "\n".join(lines)
