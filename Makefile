# Short paths to the stylecast pipeline. Every target runs the `stylecast` CLI in .venv.
STYLE ?= wave
DATA ?= ../shared/photos
VENV ?= .venv
PY := $(VENV)/bin/python
SC := $(VENV)/bin/stylecast
TORCH_VERSION ?= 2.13.0

.PHONY: setup weights train train-resume export demo test lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch first, so the [train] extra's torch requirement is already met (no CUDA wheels).
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
