"""`stylecast bench`: imported by the CLI without importing torch or onnx."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from stylecast.runtime.artifacts import slug
from stylecast.runtime.formats import BackendOptions
from stylecast.runtime.machine import usable_cores
from stylecast.runtime.options import need_torch
from stylecast.runtime.params import expand_options

QUICK_RESOLUTIONS = ["256"]
FULL_RESOLUTIONS = ["256", "512", "1080p"]


def _console_table(result: dict, console: Console) -> None:
    from stylecast.benchmarks.report import CONSOLE, columns, header_lines, highlights, notes, table_rows

    headers = tuple(h for h, _, _ in columns(result) if h in CONSOLE)
    table = Table(*headers, title="stylecast bench", title_justify="left")
    for row in table_rows(result, headers):
        table.add_row(*row)
    for line in header_lines(result):
        console.print(line, markup=False)
    console.print(table)
    for line in notes(result):
        console.print(line, markup=False, style="yellow")
    for line in highlights(result):
        console.print(line, markup=False)


def _narrowed(config, result: dict, keys: list[str]):  # noqa: ANN001, ANN202 - suite.BenchConfig, lazily imported
    """The same benchmark restricted to the variants and resolutions of ``keys``."""
    from dataclasses import replace

    names, labels = {k.split("/")[0] for k in keys}, {k.split("/")[1] for k in keys}
    return replace(config, models=[Path(v["checkpoint"]) for v in result["variants"] if v["name"] in names],
                   resolutions=[r for r in config.resolutions if r.label in labels])


def _gate(result: dict, check: Path, config, confirm: int, progress, console: Console) -> tuple[dict, list]:  # noqa: ANN001
    """Latency against the baseline of this machine class, re-measuring rows that look slower; parity floors always.

    Returns the result (with re-measured rows) and the regressions.
    """
    from stylecast.benchmarks import gate, suite
    from stylecast.runtime.machine import describe_class, mismatches

    fingerprint = result["machine"]["fingerprint"]
    if check.is_dir():
        path, passed_over = gate.select_baseline(check, fingerprint)
        if path is None:
            for line in passed_over:
                console.print(f"  passed over {line}", markup=False, soft_wrap=True)
            console.print(f"latency not gated: no baseline in {check} for this machine class "
                          f"({describe_class(fingerprint)}); record one with `make bench-baseline`",
                          markup=False, soft_wrap=True)
            return result, gate.check_floors(result)
        baseline = gate.load_baseline(path)
    else:
        path, baseline = check, gate.load_baseline(check)
        differs = mismatches(baseline.get("machine_class") or {}, fingerprint)
        if differs:
            console.print(f"note: {path} was recorded on another machine class (differs in {', '.join(differs)}); "
                          "gated anyway because it was named", markup=False, soft_wrap=True)
    for note in gate.version_notes(baseline, fingerprint):
        console.print(f"note: {path.name} was measured with {note}", markup=False, soft_wrap=True)
    baseline, changed = gate.comparable(baseline, result)
    for line in changed:
        console.print(f"  not gated {line}", markup=False, soft_wrap=True)
    if not baseline["rows"]:
        console.print(f"latency not gated: {path.name} timed other architectures; record a new baseline with "
                      "`make bench-baseline`", markup=False, soft_wrap=True)
        return result, gate.check_floors(result)
    problems = gate.check(result, baseline)
    for attempt in range(1, confirm + 1):
        slow = [p.key for p in problems if p.kind == "speedup"]
        if not slow:
            break
        console.print(f"re-measuring {len(slow)} row(s) below {path.name}'s speedups (attempt {attempt} of {confirm})",
                      markup=False, soft_wrap=True)
        again = suite.run(_narrowed(config, result, slow), progress=progress,
                          log=lambda text: console.print(text, markup=False, soft_wrap=True))
        result = gate.keep_fastest(result, again)
        problems = gate.check(result, baseline)
    problems += [p for p in gate.check_floors(result) if str(p) not in {str(q) for q in problems}]
    if not problems:
        console.print(f"no regression against {path} ({len(baseline['rows'])} rows)", markup=False, soft_wrap=True)
    return result, problems


@expand_options
def bench(
    *,
    models: Annotated[list[Path] | None, typer.Option("--models", help="Checkpoints or folders (default: models/).")] = None,
    artifacts: Annotated[Path, typer.Option(help="Exports: <artifacts>/<name>/*.onnx, *.engine.")] = Path("artifacts"),
    photos: Annotated[Path, typer.Option(help="Real photos for inputs and parity.")] = Path("benchmarks/photos"),
    resolution: Annotated[list[str] | None,
                          typer.Option(help="256, WIDTHxHEIGHT or 1080p; repeat (default 256, 512, 1080p).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]: where PyTorch runs.")] = "auto",
    options: BackendOptions,
    quick: Annotated[bool, typer.Option(help="CI size: 256² only, short timing, no torch.compile.")] = False,
    budget: Annotated[float | None, typer.Option(help="Seconds of timed rounds per model and resolution.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for <name>.json, .md and .png.")] = Path("benchmarks/results"),
    name: Annotated[str | None, typer.Option(help="File name stem (default: from the CPU/GPU and threads).")] = None,
    readme: Annotated[Path | None, typer.Option(help="Also put the table and plot into this file, between its "
                                                     "bench-results markers.")] = None,
    check: Annotated[Path | None, typer.Option(help="Baseline JSON, or a folder of them from which the one of this "
                                                    "machine class is taken: exit 1 naming every regression.")] = None,
    save_baseline: Annotated[Path | None, typer.Option(help="Write this run's ratios as a baseline JSON (into a "
                                                            "folder: under this machine class's name).")] = None,
    tolerance: Annotated[float | None, typer.Option(help="Allowed relative speedup drop, saved with a baseline "
                                                     "(default 0.3).")] = None,
    confirm: Annotated[int, typer.Option(help="Re-measure rows that look slower than the baseline up to this many "
                                              "times before calling them regressions.")] = 2,
) -> None:
    """Benchmark every model variant x format x precision x resolution against PyTorch eager fp32.

    --backend auto (the default) times every backend of the format table, --backend NAME only that one (beside \
the PyTorch eager baseline); --provider narrows the execution providers a backend offers; --threads applies to \
every engine and to PyTorch (default here: all usable cores)."""
    need_torch("export")
    from dataclasses import replace

    from stylecast.benchmarks import gate, report, suite, timing
    from stylecast.benchmarks.torch_backend import BASELINE, default_modes
    from stylecast.train.trainer import pick_device

    suite.selected_backends(options)  # an unknown --backend fails before minutes of timing

    if check is not None:  # a bad baseline fails before minutes of timing, not after
        for path in sorted(check.glob("*.json")) if check.is_dir() else [check]:
            gate.load_baseline(path)
    if readme:
        report.readme_parts(readme)  # so does a README without the markers
    torch_device = pick_device(device)
    modes = default_modes(torch_device)
    skip = {}
    if options.backend != "auto":  # one backend's rows: PyTorch gives the baseline only
        modes = [BASELINE]
    elif quick:
        modes.remove("compile")
        skip["compile"] = "skipped: --quick leaves out torch.compile (its build takes minutes on small CPUs)"
    policy = timing.QUICK if quick else timing.FULL
    if budget is not None:
        policy = replace(policy, budget_s=budget)
    resolutions = [suite.Resolution.parse(r) for r in resolution or (QUICK_RESOLUTIONS if quick else FULL_RESOLUTIONS)]
    config = suite.BenchConfig(
        models=models or [Path("models")], artifacts=artifacts, photos=photos, resolutions=resolutions,
        device=torch_device, threads=options.threads or usable_cores(), policy=policy, torch_modes=modes,
        skip_modes=skip, options=options, peak_seconds=0.5 if quick else 1.5,
    )
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)  # CI logs: no squeezed table
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[step]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("bench", total=None, step="")

        def progress(text: str, done: int, total: int) -> None:
            if total:
                bar.update(task, completed=done, total=total, step=text)
            elif text.startswith("warm-up"):
                bar.update(task, step=text)
            else:
                bar.update(task, description=text, completed=0, total=None, step="")

        result = suite.run(config, progress=progress, log=lambda text: bar.console.print(text, markup=False))
        problems = []
        if check is not None:
            result, problems = _gate(result, check, config, confirm, progress, bar.console)
    stem = name or f"{slug(result['machine'].get('gpu') or result['machine']['cpu'])}-{config.threads}t"
    report.write_json(result, out / f"{stem}.json")
    report.write_markdown(result, out / f"{stem}.md")
    report.plot(result, out / f"{stem}.png")
    if readme:
        report.splice_readme(readme, result, out / f"{stem}.png")
    _console_table(result, console)
    console.print(f"wrote {out / stem}.json, .md and .png", markup=False)
    if save_baseline:
        allowed = {**gate.DEFAULT_TOLERANCE, **({"speedup_rel": tolerance} if tolerance is not None else {})}
        written = gate.save_baseline(gate.make_baseline(result, allowed), save_baseline)
        console.print(f"baseline: {written}", markup=False)
    for line in problems:
        console.print(f"regression: {line}", markup=False, style="bold red", soft_wrap=True)
    if problems:
        raise typer.Exit(1)
