# Short paths to the stylecast pipeline. Every target runs the `stylecast` CLI in .venv.
#   make demo               fresh machine -> exported wave model -> stylized gallery
#   make test               the test suite (what CI runs)
#   make train STYLE=wave   train models/$(STYLE).safetensors on $(DATA)
#   make export STYLE=wave  artifacts/$(STYLE)/$(STYLE).fp32.onnx + report.json
#   make hostile            stylize a generated folder of 40+ hostile files (every bad one reported)
#   make bench-tiles        tiled vs whole-image agreement, and peak memory on an 8000x6000 photo
#   make bench-video        a long video with audio: flicker with/without --temporal-blend, fps by batch
STYLE ?= wave
DATA ?= ../shared/photos
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
SC := $(VENV)/bin/stylecast
TORCH_VERSION ?= 2.13.0
ART := artifacts/$(STYLE)
SAMPLES := benchmarks/photos

.PHONY: setup weights train train-resume export demo test lint clean hostile bench-tiles bench-video

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

$(ART)/$(STYLE).fp32.onnx: models/$(STYLE).safetensors $(VENV)/.installed
	$(SC) export models/$(STYLE).safetensors --out $(ART) --parity-images $(SAMPLES)

export: $(ART)/$(STYLE).fp32.onnx

demo: export
	$(SC) stylize $(SAMPLES) --model $(ART)/$(STYLE).fp32.onnx --out $(ART)/demo \
		--gallery $(ART)/gallery.png --gallery-style styles/$(STYLE).jpg
	@echo "open $(ART)/gallery.png"

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

# Media robustness (issue 7). MODEL and PHOTO may be overridden; PHOTO only seeds generated media.
MODEL ?= $(ART)/$(STYLE).fp32.onnx
PHOTO ?= $(SAMPLES)/chelsea.jpg

hostile: setup
	rm -rf artifacts/hostile artifacts/hostile-out
	$(PY) -m tests.hostile artifacts/hostile
	# Exit 1 is the expected outcome: the folder is meant to hold bad files.
	$(SC) stylize artifacts/hostile --model $(MODEL) --out artifacts/hostile-out || test $$? -eq 1

bench-tiles: setup
	$(PY) -m benchmarks.tiles --model $(MODEL) --photo $(PHOTO)

bench-video: setup
	$(PY) -m benchmarks.video --model $(MODEL) --photo $(PHOTO)

clean:
	rm -rf artifacts .pytest_cache
