# Short paths to the stylecast pipeline. Every target runs the `stylecast` CLI in .venv.
#   make demo               fresh machine -> exported wave model -> stylized gallery
#   make test               the test suite (what CI runs)
#   make train STYLE=wave   train models/$(STYLE).safetensors on $(DATA)
#   make export STYLE=wave  artifacts/$(STYLE)/$(STYLE).fp32.onnx + report.json
#   make compress STYLE=wave  prune + distil students -> models/$(STYLE)-slim.safetensors + report (resumable)
STYLE ?= wave
DATA ?= ../shared/photos
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
SC := $(VENV)/bin/stylecast
TORCH_VERSION ?= 2.13.0
ART := artifacts/$(STYLE)
SAMPLES := benchmarks/photos

.PHONY: setup weights train train-resume export demo test lint clean compress

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

# Re-running continues where it stopped: finished stages are skipped by their manifests.
compress: weights
	$(SC) compress --teacher models/$(STYLE).safetensors --data $(DATA) $(ARGS)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf artifacts .pytest_cache
