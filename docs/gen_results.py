"""mkdocs-gen-files: the Results pages, built from the committed reports in benchmarks/results/ at build time.

Every `.md` report under benchmarks/results/ lands on one of the pages below (one it fits, else Studies), with
its headings moved down a level, its links pointed at the copies of its images, the command that regenerates it
and the machine its numbers came from (read from the report's JSON where the report has one). Nothing here is
typed by hand: rerun the command, rebuild the site.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
NAMES_A_MACHINE = re.compile(r"\b(Machine:|AMD|Intel|NVIDIA|Apple|Arm|ARM|Ampere|Graviton)\b")

# Repository path of a report (relative to benchmarks/results/) -> the command that rewrites it.
REGENERATE = [
    (r"quality/(?P<style>[^/]+)-slim/report\.md", "make quality-slim STYLE={style}"),
    (r"quality/(?P<style>[^/]+)/report\.md", "make quality STYLE={style}"),
    (r"quality/(?P<style>[^/]+)/curve\.md", "make quality-curve STYLE={style} RUN={run}"),
    (r"quality/(?P<model>[^/]+)/summary\.md", "make quality-catalogue MODEL=models/{model}.safetensors"),
    (r"quality/(?P<model>[^/]+)/(?P<style>[^/]+)/report\.md",
     "make quality-catalogue MODEL=models/{model}.safetensors STYLES={style}"),
    (r"quality/(?P<model>[^/]+)/mean-curve\.md", "make quality-catalogue-curve RUN={run}"),
    (r"quality/(?P<model>[^/]+)/(?P<style>[^/]+)/curve\.md", "make quality-catalogue-curve RUN={run} STYLES={style}"),
    (r"compress/(?P<style>[^/]+)/report\.md", "make compress STYLE={style}"),
    (r"recipe-ab/step-speed-[^/]+\.md", "make step-speed"),
    (r"recipe-ab/(?P<style>.+)-[0-9a-f]+\.md", "make recipe-ab STYLE={style}"),
    (r"gate-[^/]+\.md", "make bench-gate-eval"),
    (r"serve-load[^/]*\.md", "make serve-load"),
    (r"slim-speedup\.md", "make slim-speedup"),
    (r"int8-graphs\.md", "make int8-graphs"),
    (r"students-latency\.md", 'make students-latency ARGS="--resolution 512 --resolution 1080p"'),
    (r"gpu-check/[^/]+\.md", "make gpu-check"),
    (r"tiles/tiles\.md", "make bench-tiles"),
    (r"stroke/stroke\.md", "make bench-stroke"),
    (r"ray/ray\.md", "make bench-ray"),
    (r"ray/serve\.md", "make bench-ray-serve"),
    (r"catalogue/latency\.md", "make catalogue-latency"),
]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def report_json(md: Path) -> dict:
    """The JSON written beside a report by the same command (`x.md` -> `x.json`)."""
    return load_json(md.with_suffix(".json"))


def is_bench_suite(md: Path) -> bool:
    return md.parent == RESULTS and "peaks_gflops" in report_json(md)


def regenerate(md: Path) -> str | None:
    name = md.relative_to(RESULTS).as_posix()
    if is_bench_suite(md):
        budget = report_json(md).get("settings", {}).get("policy", {}).get("budget_s")
        return f'make bench ARGS="--budget {budget:g}"' if budget else "make bench"
    for pattern, command in REGENERATE:
        found = re.fullmatch(pattern, name)
        if found:
            run = report_json(md).get("run_dir") or "runs/<style>"
            return command.format(**found.groupdict(), run=run)
    return None


def describe_fingerprint(machine: dict) -> str:
    """`AMD EPYC (AuthenticAMD family 25 model 17; avx2, avx512f; 2 cores), torch 2.13, ONNX Runtime 1.32`."""
    parts = [str(machine.get("cpu") or "unknown CPU")]
    inner = []
    if machine.get("vendor"):
        inner.append(" ".join(str(x) for x in (machine["vendor"], "family", machine.get("family"), "model",
                                                machine.get("model"))))
    if machine.get("features"):
        inner.append(", ".join(machine["features"]))
    if machine.get("cores"):
        inner.append(f"{machine['cores']} cores")
    if inner:
        parts.append(f"({'; '.join(inner)})")
    text = " ".join(parts)
    versions = [f"{label} {machine[key]}" for key, label in (("torch", "torch"), ("onnxruntime", "ONNX Runtime"))
                if machine.get(key)]
    return ", ".join([text, *versions])


def machine_line(md: Path, text: str) -> str:
    """Where a report's numbers came from: its JSON's `machine`, else its baseline's machine class, else what
    the report itself says. Empty where the report already names the machine as its JSON does."""
    data = report_json(md)
    machine = data.get("machine")
    if isinstance(machine, str) and machine:
        return "" if machine in text else f"**Machine:** {machine}."
    if isinstance(machine, dict) and machine:
        fingerprint = machine.get("fingerprint") if isinstance(machine.get("fingerprint"), dict) else machine
        line = describe_fingerprint(fingerprint)
        if machine.get("gpu"):
            line = f"{machine['gpu']}; {line}"
        if machine.get("threads"):
            line += f"; {machine['threads']} thread(s) used"
        return f"**Machine:** {line}."
    baseline = load_json(ROOT / data["baseline"]) if isinstance(data.get("baseline"), str) else {}
    if isinstance(baseline.get("machine_class"), dict):
        return (f"**Machine:** {describe_fingerprint(baseline['machine_class'])} (the machine class of its "
                f"baseline, `{data['baseline']}`).")
    if NAMES_A_MACHINE.search(text):
        return "**Machine:** as the report below states."
    return "**Machine:** not recorded in this report."


def demote(text: str, levels: int) -> str:
    """Move every Markdown heading down `levels` levels (outside code fences)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            hashes = len(line) - len(line.lstrip("#"))
            line = "#" * min(6, hashes + levels) + line[hashes:]
        out.append(line)
    return "\n".join(out)


def docs_path(repo_path: str) -> str:
    """Where a repository file is found in the site: docs/ files as they are, the rest under their repository
    path (gen_assets.py copies the images there; anything else linked is copied here on demand)."""
    if repo_path.startswith("docs/"):
        return repo_path[len("docs/"):]
    return repo_path


_copied: set[str] = set()


def rewrite_links(text: str, source_dir: Path, page: str) -> str:
    """Point a report's relative links (written relative to the report's folder) at the site's copies, from
    `page`. A link to a file that does not exist is left as plain text, so the build never fails on it."""

    def fix(found: re.Match) -> str:
        head, target, tail = found.groups()
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return found.group(0)
        path, _, anchor = target.partition("#")
        source = (source_dir / path).resolve()
        if not source.is_file() or not source.is_relative_to(ROOT):
            return f"{head[:-2].lstrip('!')}] (`{path}`, not found)"
        where = docs_path(rel(source))
        if not rel(source).startswith("docs/") and where not in _copied:
            with mkdocs_gen_files.open(where, "wb") as copy:
                copy.write(source.read_bytes())
            _copied.add(where)
        link = posixpath.relpath(where, posixpath.dirname(page) or ".")
        return f"{head}{link}{'#' + anchor if anchor else ''}{tail}"

    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        out.append(line if fenced else LINK.sub(fix, line))
    return "\n".join(out)


def default_title(md: Path) -> str:
    data = report_json(md)
    if is_bench_suite(md):
        machine = data.get("machine", {})
        device = machine.get("gpu") or machine.get("cpu") or md.stem
        return f"{device}, {machine.get('threads', '?')} thread(s) (`{md.stem}`)"
    if md.name.startswith("gate-"):
        return f"Gate evaluation (`{md.stem}`)"
    return f"`{md.relative_to(RESULTS).as_posix()}`"


def section(md: Path, page: str, level: int = 2, title: str | None = None) -> str:
    """One report as a section of `page`: a heading, where it came from, and the report itself."""
    text = md.read_text()
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):
        own_title, text = lines[0][2:].strip(), "\n".join(lines[1:])
    else:
        own_title = None
    heading = title or own_title or default_title(md)
    source = f"Report: `{rel(md)}`."
    command = regenerate(md)
    if command and "Regenerate" not in text:
        source += f" Regenerate: `{command}`."
    body = rewrite_links(demote(text.strip(), level - 1), md.parent, page)
    meta = "  \n".join(line for line in (source, machine_line(md, text)) if line)  # two lines, one paragraph
    return f"{'#' * level} {heading}\n\n{meta}\n\n{body}\n"


def image(path: Path, page: str, alt: str) -> str:
    if not path.is_file():
        return ""
    link = posixpath.relpath(docs_path(rel(path)), posixpath.dirname(page))
    return f"![{alt}]({link})\n"


def readme_block(name: str, page: str) -> str | None:
    """What the README holds between its `name` markers (written by a command), with its links fixed."""
    text = README.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        return None
    return rewrite_links(text.split(start, 1)[1].split(end, 1)[0].strip(), ROOT, page)


def write(page: str, title: str, intro: str, sections: list[str], empty: str = "No report committed yet.") -> None:
    with mkdocs_gen_files.open(page, "w") as out:
        out.write(f"# {title}\n\n{intro.strip()}\n\n")
        out.write("\n".join(sections) if sections else f"{empty}\n")


def reports() -> list[Path]:
    return sorted(p for p in RESULTS.rglob("*.md") if "gatys-reference" not in p.parts)


GENERATED = ("This page is generated when the site is built, from the reports committed in "
             "`benchmarks/results/`; each section names its report, the command that regenerates it and the "
             "machine its numbers came from.")

claimed: set[Path] = set()


def take(paths) -> list[Path]:
    chosen = [p for p in paths if p not in claimed]
    claimed.update(chosen)
    return chosen


# Benchmark suite: one report per machine (`make bench`), and the GPU acceptance run where one is committed.
page = "results/bench.md"
bench = take(p for p in reports() if is_bench_suite(p))
gpu = take(p for p in reports() if p.parent.name == "gpu-check")
write(page, "Benchmark suite",
      f"{GENERATED} How the suite measures, and what each column means: [Benchmarks](../benchmarks.md).",
      [section(p, page) for p in bench] + [section(p, page, title="GPU acceptance run") for p in gpu])

# Quality: the styles table of the README, then every style's report, training curve and pictures.
page = "results/quality.md"
sections = []
block = readme_block("styles", page)
if block:
    sections.append("## The shipped styles\n\nThe table of the README, written by `make styles-sheet` (every style "
                    "with a model, on the same photos, and its quality figures).\n\n" + block + "\n")
quality = RESULTS / "quality"
for folder in sorted(p for p in quality.iterdir() if p.is_dir()) if quality.is_dir() else []:
    parts = [f"## {folder.name}\n"]
    for name in ("report.md", "curve.md"):
        if (folder / name).is_file():
            parts.append(section(take([folder / name])[0], page, level=3))
    if (folder / "contact.jpg").is_file():
        parts.append("Contact sheet (photo | model | Gatys):\n\n" + image(folder / "contact.jpg", page, "contact sheet"))
    if (folder / "curve.png").is_file():
        parts.append("Quality against training CPU-hours:\n\n" + image(folder / "curve.png", page, "quality curve"))
    parts.extend(section(p, page, level=3) for p in take(p for p in reports() if p.is_relative_to(folder)))
    sections.append("\n".join(parts))
write(page, "Quality of the shipped styles",
      f"{GENERATED} The quality reports do not record a machine: the loss, border and flicker ratios do not "
      "depend on it, and the CPU-hours are those of the machine the model trained on. What the figures mean: "
      "[Quality](../quality.md).", sections)

# Recipe A/B tables (one per machine class) with their picture sheets, and the training-step speed probe.
page = "results/recipe-ab.md"
sections = []
for md in take(p for p in reports() if p.parent.name == "recipe-ab"):
    picture = image(md.with_suffix(".jpg"), page, "every variant on three held-out photos")
    sections.append(section(md, page) + (f"\n{picture}" if picture else ""))
write(page, "Recipe A/B and step speed",
      f"{GENERATED} A CPU-minute buys different training on different CPUs, so each machine class has its own "
      "table. How the A/B works: [Quality](../quality.md#recipe-ab).", sections)

page = "results/compress.md"
write(page, "Compression", f"{GENERATED} How the students are made: [Compression](../compression.md).",
      [section(p, page) for p in take(p for p in reports() if p.parent.parent.name == "compress")])

page = "results/serve-load.md"
write(page, "Serving under load", f"{GENERATED} What the load test does: [Serving](../serving.md#under-load).",
      [section(p, page) for p in take(p for p in reports() if p.name.startswith("serve-load"))])

page = "results/gate.md"
write(page, "Regression gate",
      f"{GENERATED} Each report measures the gate on one machine class: false alarms on an unchanged tree, "
      "and whether a slower graph and an impossible baseline fail it. How the gate works: "
      "[Benchmarks](../benchmarks.md#regression-gate-ci).",
      [section(p, page) for p in take(p for p in reports() if p.name.startswith("gate-"))])

page = "results/tiles.md"
write(page, "Huge images in tiles",
      f"{GENERATED} How tiles are normalised: [Video and huge images](../video.md#huge-images).",
      [section(p, page) for p in take(p for p in reports() if p.parent.name == "tiles")])

# Studies: the one-off measurements, benchmarks/results/studies/ if present, and any report not placed above.
page = "results/studies.md"
write(page, "Studies",
      f"{GENERATED} What each study asks: [Benchmarks](../benchmarks.md#studies).",
      [section(p, page) for p in take(reports())])

# The overview: what each page holds.
items = []
for page, what in (("bench.md", "the benchmark suite: every model x format x precision x resolution"),
                   ("quality.md", "each shipped style against converged Gatys, its training curve and pictures"),
                   ("recipe-ab.md", "training recipes compared at an equal CPU budget; training-step speed"),
                   ("compress.md", "the distilled and pruned students against their teacher"),
                   ("serve-load.md", "`stylecast serve` at 1 to 64 concurrent clients"),
                   ("tiles.md", "a 12 MP photo in tiles against the whole image, and peak memory"),
                   ("studies.md", "one-off measurements: student latency, the slim model's speed-up, int8 graphs"),
                   ("gate.md", "the CI regression gate's false-alarm rate and power")):
    items.append(f"- [{what[0].upper() + what[1:]}]({page})")
with mkdocs_gen_files.open("results/index.md", "w") as out:
    out.write(f"# Results\n\n{GENERATED} {len(claimed)} reports in all:\n\n" + "\n".join(items) + "\n")
