# Short paths to the stylecast pipeline. Every target runs the `stylecast` CLI in .venv.
#   make demo               fresh machine -> exported wave model -> stylized gallery
#   make test               the test suite (what CI runs); make test-fast: the unit tests alone
#   make train STYLE=wave   train models/$(STYLE).safetensors on $(DATA) (on a GPU: the preset's [cuda] recipe)
#   make export STYLE=wave  artifacts/$(STYLE)/$(STYLE).{fp32,fp16,int8}.onnx + report.json
#                           (+ TensorRT engines where TensorRT is installed)
#   make precision-latency  the benchmark of $(STYLE) alone at 512², 1 thread: every precision in one run
#   make students-latency   deployment-student candidates (random init) timed on OpenVINO/ORT int8 vs the
#                           teacher's eager fp32 at 512² and 1080p -> benchmarks/results/students-latency.md
#   make compress STYLE=wave  prune + distil students -> models/$(STYLE)-slim.safetensors + report (resumable)
#   make slim-speedup       $(STYLE)-slim's int8 engines vs $(STYLE)'s eager fp32, 3 separate runs
#                           -> benchmarks/results/slim-speedup.md
#   make catalogue-latency  an 8-style net vs a single-style net of the same width (random init, or ARGS="--single
#                           M --multi M"): latency per engine, precision and resolution, and serve's peak RSS with one,
#                           the 8-style and 8 single-style models -> benchmarks/results/catalogue/latency.{md,json}
#   make int8-graphs        $(STYLE)'s int8 graph as exported vs its last conv int8 too, on OpenVINO and ONNX Runtime
#                           -> benchmarks/results/int8-graphs.md
#   make bench              every model x format x precision x resolution -> benchmarks/results/
#   make bench-check        quick CPU benchmark of $(STYLE) gated against this machine class's baseline (CI)
#   make bench-baseline     record this machine class's baseline next to the others in benchmarks/baselines/
#   make bench-gate-eval    the gate's false-alarm rate and power on this machine -> benchmarks/results/gate-*.md
#   make compare STYLE=wave feed-forward model vs Gatys (50/100/300 L-BFGS iterations, VGG19 and VGG16)
#   make optimize-demo      one Gatys multi-scale 512 px stylization of a sample photo
#   make hostile            stylize a generated folder of 40+ hostile files (every bad one reported)
#   make int8-sensitivity   each conv rounded to int8 on its own: why the leading convs stay fp32
#   make bench-tiles        tiled vs whole-image agreement on a 12 MP photo per tile normalisation and precision,
#                           sky crops, peak memory at 12 and 48 MP -> benchmarks/results/tiles/
#   make bench-stroke       --stroke 1/0.5/0.25: crops of a 12 MP photo per style, 1080p latency against stroke 1 and
#                           sharpness along the photo's edges -> benchmarks/results/stroke/
#   make bench-video        a long video with audio: flicker with/without --temporal-blend, fps by batch
#   make bench-ray          Ray's overhead: 200 (RAY_PHOTOS) 512 px photos through local stylize and --ray with
#                           1 and 2 actors on the same cores, interleaved -> benchmarks/results/ray/ray.{md,json}
#   make bench-ray-serve    Ray Serve's overhead: `serve --ray` (1 replica) against `serve` on the same cores, /v1 and v2
#                           at concurrency 1 and 8, interleaved -> benchmarks/results/ray/serve.{md,json}
#   make check-trt          the exports of $(STYLE) against TensorRT's documented ONNX-parser constraints (CPU)
#   make gpu-check          the GPU acceptance run -> benchmarks/results/gpu-check/ (exit 77 without CUDA)
#   make gpu-wheels         the small wheels a GPU box without network needs for gpu-check -> wheels/
#   make serve              stylecast serve on 127.0.0.1:8000: the page, /v1/stylize, /v2 (Triton protocol), /metrics
#   make serve-load         Locust load test of the server (fp32/int8, batching on/off, /v1 and v2, 1-64 users) and its
#                           overhead over the model called directly -> benchmarks/results/serve-load.{md,json,png};
#                           PERF_ANALYZER=.venv-perf/bin/perf_analyzer adds Triton's perf_analyzer (make perf-analyzer)
#   make serve-attack       hostile clients replayed against the default server: 5xx count, health latency, memory
#                           -> benchmarks/results/serve-attack/attack.{md,json}
#   make quality STYLE=wave the yardstick: models/$(STYLE).safetensors vs the style's Gatys reference (computed
#                           once, resumable) -> benchmarks/results/quality/$(STYLE)/report.{json,md}, contact.jpg
#   make quality-slim STYLE=wave   the same for models/$(STYLE)-slim.safetensors -> .../quality/$(STYLE)-slim/
#   make quality-curve STYLE=wave  every snapshot of runs/$(STYLE) (RUN=...) scored: quality against training
#                           CPU-hours and the hours a fit says 1.4x Gatys needs -> .../quality/$(STYLE)/curve.*
#   make quality-catalogue  a multi-style model (MODEL=models/catalogue.safetensors) scored style by style (STYLES=all
#                           or one style) -> .../quality/<model>/<style>/report.*, .../quality/<model>/summary.md
#   make quality-catalogue-curve  every snapshot of a multi-style run (RUN=runs/catalogue) scored, the mean over its
#                           styles (STYLES=all) or one style -> .../quality/<model>/mean-curve.* or .../<style>/curve.*
#   make ship STYLE=...     what a trained style ships: exports at every precision, models/$(STYLE).gallery.jpg,
#                           its quality report, its deployment student distilled from it (make compress), then the
#                           styles sheet; a student left from an older teacher is refused until this remakes it
#   make styles-sheet       every style with a model on the same photos, and its quality figures -> README
#                           (docs/examples/styles.jpg and the table between the styles markers)
#   make recipe-ab STYLE=wave  benchmarks/recipes/$(STYLE).toml's variants at an equal CPU budget, scored
#                           -> benchmarks/results/recipe-ab/$(STYLE)-<machine class>.{md,json,jpg}, docs/quality.md (resumable)
#   make step-speed         training-step speed of fp32 / channels_last / torch.compile / bf16 on this machine
#   make docs               the documentation site (mkdocs-material) -> site/, with --strict (a broken link fails)
STYLE ?= wave
DATA ?= ../shared/photos
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
SC := $(VENV)/bin/stylecast
TORCH_VERSION ?= 2.13.0
ART := artifacts/$(STYLE)
SAMPLES := benchmarks/photos
# int8 calibration photos (the parity photos in $(SAMPLES) are excluded by content).
CALIB ?= $(DATA)
# The page whose recipe-ab-$(STYLE) markers get the A/B table (empty: the report files alone).
RECIPE_README ?= docs/quality.md
# Precisions kept (marked below_target in report.json) when they miss their parity floor; empty: fail loudly.
ALLOW_BELOW_FLOOR ?=
# A folder (the baseline of this machine's class is picked from it) or one baseline file, checked on purpose.
BENCH_BASELINE ?= benchmarks/baselines
# One thread: single-threaded ratios hardly move when neighbours load the machine (see docs/benchmarks.md).
BENCH_GATE := --quick --threads 1 --models models/$(STYLE).safetensors --artifacts artifacts/gate

.PHONY: setup weights train train-resume export demo test test-fast lint docs clean precision-latency compress students-latency slim-speedup catalogue-latency int8-graphs bench bench-check bench-baseline bench-gate-eval weights-vgg19 compare optimize-demo hostile bench-tiles bench-stroke bench-video bench-ray bench-ray-serve int8-sensitivity check-trt gpu-check gpu-wheels serve serve-load perf-analyzer serve-attack quality quality-reference quality-slim quality-curve quality-catalogue quality-catalogue-curve styles-sheet ship recipe-ab step-speed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, so the [train] extra's torch requirement is already met
	# and pip never pulls the multi-GB CUDA build.
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

weights: setup
	$(SC) weights fetch vgg16

train: weights
	$(SC) train --style $(STYLE) --data $(DATA) $(ARGS)

train-resume: weights
	$(SC) train --style $(STYLE) --data $(DATA) --resume $(ARGS)

# A style without a trained model: one line that says how to get one, not make's "No rule to make target".
models/%.safetensors:
	@echo "models/$*.safetensors: no model for style '$*' yet; train one: make train STYLE=$* (styles/$*.toml)" >&2
	@exit 1

# The demo needs only fp32 (no calibration photos, so it works on a fresh clone). An export that is still
# current is reused, not rewritten: the touch tells make so, or every later make would re-check it.
$(ART)/$(STYLE).fp32.onnx: models/$(STYLE).safetensors $(VENV)/.installed
	$(SC) export models/$(STYLE).safetensors --out $(ART) --parity-images $(SAMPLES) --precision fp32
	@touch $@

export: setup
	$(SC) export models/$(STYLE).safetensors --out $(ART) --parity-images $(SAMPLES) \
		--precision fp32,fp16,int8 --calibration-images $(CALIB) --allow-below-floor "$(ALLOW_BELOW_FLOOR)"
	@if $(PY) -c "import tensorrt" 2>/dev/null; then \
		for p in fp32 fp16 int8; do $(SC) build-engine $(ART)/$(STYLE).$$p.onnx || exit 1; done; \
	else echo "TensorRT not installed here: no engines built (run stylecast build-engine on the GPU or Jetson)"; fi

# int8 alone (serve-load): it needs the calibration photos in $(CALIB).
$(ART)/$(STYLE).int8.onnx: models/$(STYLE).safetensors $(VENV)/.installed
	$(SC) export models/$(STYLE).safetensors --out $(ART) --parity-images $(SAMPLES) --precision int8 \
		--calibration-images $(CALIB)
	@touch $@

demo: $(ART)/$(STYLE).fp32.onnx
	$(SC) stylize $(SAMPLES) --model $(ART)/$(STYLE).fp32.onnx --out $(ART)/demo \
		--gallery $(ART)/gallery.jpg --gallery-style styles/$(STYLE).jpg
	@echo "open $(ART)/gallery.jpg"

precision-latency: export
	$(SC) bench --models models/$(STYLE).safetensors --resolution 512 --threads 1 --out $(ART)/bench $(ARGS)

# Re-running continues where it stopped: finished stages are skipped by their manifests.
compress: weights
	$(SC) compress --teacher models/$(STYLE).safetensors --data $(DATA) $(ARGS)

# Latency before training: which deployment-student candidates are worth distilling (`compress --student NAME`).
students-latency: setup
	$(PY) -m stylecast.benchmarks.studies.students_latency --teacher models/$(STYLE).safetensors $(ARGS)

# The shipped slim model's int8 engines vs the teacher's eager fp32, 3 separate runs (needs both int8 exports).
slim-speedup: setup
	$(PY) -m stylecast.benchmarks.studies.slim_speedup --teacher models/$(STYLE).safetensors \
		--slim models/$(STYLE)-slim.safetensors $(ARGS)

# One multi-style net against one single-style net of its architecture (random init: latency and memory do not depend
# on the weights): within 5% of its latency everywhere, and serve's memory against one and against 8 models.
catalogue-latency: setup
	$(PY) -m stylecast.benchmarks.studies.catalogue_latency $(ARGS)

# The int8 graph each engine wants: $(STYLE)'s export as made (last conv fp32) vs the last conv int8 too.
int8-graphs: setup
	$(PY) -m stylecast.benchmarks.studies.int8_graphs --model models/$(STYLE).safetensors --calibration-images $(CALIB) $(ARGS)

# Every model in models/ is exported (all precisions; current exports are reused) and then benchmarked.
bench: setup
	for m in models/*.safetensors; do $(MAKE) --no-print-directory export STYLE=$$(basename $$m .safetensors) || exit 1; done
	$(SC) bench --readme docs/benchmarks.md $(ARGS)

# The gate's own exports (fp32 and int8, so the int8 engines are gated too), apart from artifacts/$(STYLE)/.
# A fresh clone has no calibration photos: the int8 one calibrates on crops and mirrors of $(SAMPLES), with the
# int8 choices fixed (4 leading convs and the last fp32, as the width-32 wave export chose; Percentile), so
# every run of the gate times the same graph.
GATE_ART := artifacts/gate
$(GATE_ART)/$(STYLE)/$(STYLE).int8.onnx: models/$(STYLE).safetensors $(VENV)/.installed
	$(PY) -m stylecast.benchmarks.gate_calibration $(SAMPLES) $(GATE_ART)/calibration
	$(SC) export models/$(STYLE).safetensors --out $(GATE_ART)/$(STYLE) --parity-images $(SAMPLES) \
		--precision fp32,int8 --calibration-images $(GATE_ART)/calibration --int8-method percentile --int8-fp32-convs 4
	@touch $@

bench-check: $(GATE_ART)/$(STYLE)/$(STYLE).int8.onnx
	$(SC) bench $(BENCH_GATE) --check $(BENCH_BASELINE) --out artifacts/bench-check $(ARGS)

bench-baseline: $(GATE_ART)/$(STYLE)/$(STYLE).int8.onnx
	$(SC) bench $(BENCH_GATE) --save-baseline $(BENCH_BASELINE) --out artifacts/bench-check $(ARGS)

# The gate's false-alarm rate (5 runs on this tree) and power (a 2x-FLOPs graph, a 10x baseline) on this machine.
bench-gate-eval: $(GATE_ART)/$(STYLE)/$(STYLE).int8.onnx
	$(PY) -m stylecast.benchmarks.studies.gate_eval --model models/$(STYLE).safetensors --baselines $(BENCH_BASELINE) \
		--artifacts $(GATE_ART) --out benchmarks/results/gate-$$($(PY) -c "from stylecast.runtime.machine import fingerprint, class_id; print(class_id(fingerprint()))") $(ARGS)
weights-vgg19: setup
	$(SC) weights fetch vgg19

# Gatys vs feed-forward on $(COMPARE_PHOTOS) at $(COMPARE_SIZE) px, single scale (as Johnson et al. compared):
# one $(GATYS_STEPS)-iteration run per photo and loss network, saved also after each of $(GATYS_SNAPSHOTS)
# iterations (an L-BFGS run is the same up to there), then an evaluation of everything with each of $(EVAL_NETS).
# Finished runs are kept (a re-run continues with the missing ones); delete $(CMP) to start over.
CMP := $(ART)/compare
COMPARE_PHOTOS ?= $(wildcard $(SAMPLES)/*.jpg)
COMPARE_SIZE ?= 256
GATYS_STEPS ?= 300
GATYS_SNAPSHOTS ?= 50 100
LOSS_NETS ?= vgg19 vgg16
EVAL_NETS ?= vgg16 vgg19
GATYS_ARGS ?=
compare: $(ART)/$(STYLE).fp32.onnx weights weights-vgg19
	for net in $(LOSS_NETS); do for photo in $(COMPARE_PHOTOS); do name=$$(basename $$photo .jpg); \
		test -f $(CMP)/gatys$(GATYS_STEPS)-$$net/$$name.png || \
		$(SC) optimize $$photo styles/$(STYLE).jpg -o $(CMP)/gatys$(GATYS_STEPS)-$$net/$$name.png --loss-net $$net \
			--scales $(COMPARE_SIZE) --steps $(GATYS_STEPS) $(GATYS_ARGS) \
			$(foreach n,$(GATYS_SNAPSHOTS),--snapshot $(n):$(CMP)/gatys$(n)-$$net/$$name.png) || exit 1; done; done
	for eval in $(EVAL_NETS); do $(SC) evaluate $(COMPARE_PHOTOS) --style styles/$(STYLE).jpg --size $(COMPARE_SIZE) \
		--loss-net $$eval --out $(CMP)/eval-$$eval --method $(STYLE)=$(ART)/$(STYLE).fp32.onnx \
		$(foreach net,$(LOSS_NETS),$(foreach n,$(GATYS_SNAPSHOTS) $(GATYS_STEPS),--method gatys$(n)-$(net)=$(CMP)/gatys$(n)-$(net))) \
		|| exit 1; done
	@echo "open $(CMP)/eval-*/report.md and contact.png"

optimize-demo: weights-vgg19
	$(SC) optimize $(SAMPLES)/astronaut.jpg styles/$(STYLE).jpg -o $(ART)/optimize/astronaut.jpg \
		--scales 192,320,512 --steps 100,40,20

test: setup
	$(PY) -m pytest -q

# The unit tests alone (no training, export or CLI runs): under a minute.
test-fast: setup
	$(PY) -m pytest -q -m "not slow and not gpu"

lint: setup
	$(VENV)/bin/ruff check .

# The documentation site from docs/ (mkdocs.yml): results pages from benchmarks/results/, the CLI reference from the
# Typer app and the API reference from stylecast.runtime, all generated at build time. --strict: a broken link,
# anchor or page fails the build. (The two variables silence MkDocs-2.0 notices that plugins print.)
docs: setup
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(VENV)/bin/mkdocs build --strict --site-dir site

# Media robustness (issue 7). MODEL and PHOTO may be overridden; PHOTO only seeds generated media.
MODEL ?= $(ART)/$(STYLE).fp32.onnx
PHOTO ?= $(SAMPLES)/chelsea.jpg

hostile: setup $(MODEL)
	rm -rf artifacts/hostile artifacts/hostile-out
	$(PY) -m stylecast.benchmarks.media.hostile artifacts/hostile
	# Exit 1 is the expected outcome: the folder is meant to hold bad files.
	$(SC) stylize artifacts/hostile --model $(MODEL) --out artifacts/hostile-out || test $$? -eq 1

int8-sensitivity: setup
	$(PY) -m stylecast.benchmarks.studies.int8_sensitivity --model models/$(STYLE).safetensors

# A sky for the crops: the rocket photo (public domain) upscaled to a phone's 12 MP; every precision of $(STYLE).
TILES_PHOTO ?= $(SAMPLES)/rocket.jpg
bench-tiles: export
	$(PY) -m stylecast.benchmarks.media.tiles --model $(ART)/$(STYLE).fp32.onnx --photo $(TILES_PHOTO) \
		--docs docs/video.md $(ARGS)

# Every --model STROKE_MODELS names (default: the wave export and one other exported style).
STROKE_MODELS ?=
bench-stroke: export
	$(PY) -m stylecast.benchmarks.media.stroke $(foreach m,$(STROKE_MODELS),--model $(m)) --photo $(TILES_PHOTO) $(ARGS)

bench-video: setup $(MODEL)
	$(PY) -m stylecast.benchmarks.media.video --model $(MODEL) --photo $(PHOTO)

# Photos made from $(DATA) (benchmarks/photos, cycled, where it is absent); a 2-CPU local Ray cluster. RAY_PHOTOS=10
# for a quick check. Regenerate on a quiet machine.
RAY_PHOTOS ?= 200
bench-ray: $(ART)/$(STYLE).fp32.onnx
	$(PY) -m stylecast.benchmarks.ray_overhead --model $(ART)/$(STYLE).fp32.onnx --photos $(RAY_PHOTOS) \
		--source $(DATA) $(ARGS)

bench-ray-serve: $(ART)/$(STYLE).fp32.onnx
	$(PY) -m stylecast.benchmarks.load.ray_overhead --model $(ART)/$(STYLE).fp32.onnx $(ARGS)

check-trt: setup
	for r in 10.3 10.x 11; do $(SC) check-trt $(wildcard $(ART)/$(STYLE).*.onnx) --trt $$r || exit 1; done

# Also on a GPU box with no network and no venv: torch (CUDA), numpy, Pillow, onnx and onnxruntime installed, then
# `pip install --no-deps --no-build-isolation -e .` (docs/tensorrt.md, "GPU acceptance run"). Exit 77 where CUDA is missing.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
# The pure-Python wheels such a box lacks (the fp16/int8 export steps need them), fetched here to carry along.
gpu-wheels: setup
	$(PY) -m pip download -q --no-deps --only-binary=:all: -d wheels onnxslim onnxconverter-common

gpu-check:
	@$(GPU_PY) -m stylecast.export.gpu_check $(ARGS)

# Issue 14. The reference is computed where missing (300 L-BFGS iterations x 8 photos x 2 losses: hours on a
# CPU; REFERENCE_ARGS="--device cuda" on a GPU); a finished one is reused, so scoring takes seconds.
QUALITY_MODEL ?= models/$(STYLE).safetensors
REFERENCE_ARGS ?=
quality-reference: weights
	$(SC) quality-reference --style $(STYLE) --photos $(DATA) $(REFERENCE_ARGS)

quality: quality-reference
	$(SC) quality $(QUALITY_MODEL) --style $(STYLE) --photos $(DATA) $(ARGS)

# The slim model (make compress) on the same yardstick as its teacher.
quality-slim: quality-reference
	$(SC) quality models/$(STYLE)-slim.safetensors --style $(STYLE) --photos $(DATA) \
		--out benchmarks/results/quality/$(STYLE)-slim $(ARGS)

RUN ?= runs/$(STYLE)
quality-curve: quality-reference
	$(SC) quality-curve $(RUN) --style $(STYLE) --photos $(DATA) $(ARGS)

# A multi-style model, each style against its own Gatys reference (a style without one is listed as such: make
# quality-reference STYLE=<style> computes it). MODEL and RUN default to the catalogue's here.
STYLES ?= all
quality-catalogue: MODEL = models/catalogue.safetensors
quality-catalogue: weights
	$(SC) quality $(MODEL) --style $(STYLES) --photos $(DATA) $(ARGS)

quality-catalogue-curve: RUN = runs/catalogue
quality-catalogue-curve: weights
	$(SC) quality-curve $(RUN) --style $(STYLES) --photos $(DATA) $(ARGS)

styles-sheet: setup
	$(PY) -m stylecast.benchmarks.quality.styles_sheet $(ARGS)

ship: export demo quality compress
	cp $(ART)/gallery.jpg models/$(STYLE).gallery.jpg.tmp && mv models/$(STYLE).gallery.jpg.tmp models/$(STYLE).gallery.jpg
	$(MAKE) --no-print-directory styles-sheet

recipe-ab: weights
	$(SC) recipe-ab --variants benchmarks/recipes/$(STYLE).toml --data $(DATA) --photos $(DATA) \
		$(if $(RECIPE_README),--readme $(RECIPE_README)) $(ARGS)

step-speed: weights
	$(PY) -m stylecast.benchmarks.studies.step_speed --style $(STYLE) --data $(DATA) $(ARGS)

clean:
	rm -rf artifacts .pytest_cache

# The server on its defaults (127.0.0.1:8000); ARGS adds flags, e.g. ARGS="--model artifacts/wave/wave.int8.onnx".
serve: $(ART)/$(STYLE).fp32.onnx
	$(SC) serve --model $(ART)/$(STYLE).fp32.onnx $(ARGS)

# Bounded: LOAD_SECONDS of Locust users at each level (1, 4, 16, 64 users) per route, model and batching mode, each
# then ending after its request in flight; exits 1 if a request was lost or the server's /metrics disagree with Locust's
# counts. Regenerate on a quiet machine.
LOAD_SECONDS ?= 30
PERF_ANALYZER ?=
PERF_VENV := .venv-perf
serve-load: $(ART)/$(STYLE).fp32.onnx $(ART)/$(STYLE).int8.onnx
	$(PY) -m stylecast.benchmarks.load.run --model $(ART)/$(STYLE).fp32.onnx --model $(ART)/$(STYLE).int8.onnx \
		--seconds $(LOAD_SECONDS) $(if $(PERF_ANALYZER),--perf-analyzer $(PERF_ANALYZER)) \
		--out benchmarks/results/serve-load $(ARGS)

# Triton's perf_analyzer in a venv of its own. PyPI's perf-analyzer wheels are built for glibc 2.38 (Debian 12 has
# 2.36, so pip takes its placeholder release, which has no binary); tritonclient 2.51's wheel (Triton 24.10) still
# carries a perf_analyzer built for glibc 2.34. It links the CUDA runtime even to speak HTTP (installed beside it
# from PyPI, found there by the load test) and libb64 (Debian's libb64-0d).
perf-analyzer: $(PERF_VENV)/bin/perf_analyzer

$(PERF_VENV)/bin/perf_analyzer:
	$(PYTHON) -m venv $(PERF_VENV)
	$(PERF_VENV)/bin/pip install -q --no-deps tritonclient==2.51.0 nvidia-cuda-runtime-cu12
	@/sbin/ldconfig -p | grep -q libb64 || echo "perf_analyzer also needs libb64: apt-get install libb64-0d"

# The malformed requests, huge JSON infers, abandoned 25 MP uploads and concurrent 2048² uploads of
# docs/serving.md against `stylecast serve` with its defaults; each figure printed beside its target. Exits 1 if a
# malformed request got a 5xx. ARGS=--quick for small sizes. Regenerate on a quiet machine.
serve-attack: $(ART)/$(STYLE).fp32.onnx
	$(PY) -m stylecast.benchmarks.load.attack --model $(ART)/$(STYLE).fp32.onnx --out benchmarks/results/serve-attack \
		$(ARGS)
