# Short paths to the stylecast pipeline. Every target runs the `stylecast` CLI in .venv.
#   make demo               fresh machine -> exported wave model -> stylized gallery
#   make test               the test suite (what CI runs)
#   make train STYLE=wave   train models/$(STYLE).safetensors on $(DATA)
#   make export STYLE=wave  artifacts/$(STYLE)/$(STYLE).fp32.onnx + report.json
#   make compare STYLE=wave feed-forward model vs Gatys (50/100/300 L-BFGS iterations, VGG19 and VGG16)
#   make optimize-demo      one Gatys multi-scale 512 px stylization of a sample photo
STYLE ?= wave
DATA ?= ../shared/photos
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
SC := $(VENV)/bin/stylecast
TORCH_VERSION ?= 2.13.0
ART := artifacts/$(STYLE)
SAMPLES := benchmarks/photos

.PHONY: setup weights train train-resume export demo test lint clean weights-vgg19 compare optimize-demo

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

weights-vgg19: setup
	$(SC) weights fetch vgg19

# Gatys vs feed-forward on $(SAMPLES) at $(COMPARE_SIZE) px, single scale (as Johnson et al. compared):
# one $(GATYS_STEPS)-iteration run per photo and loss network, saved also after each of $(GATYS_SNAPSHOTS)
# iterations (an L-BFGS run is the same up to there), then one evaluation of everything with $(EVAL_NET).
CMP := $(ART)/compare
COMPARE_SIZE ?= 256
GATYS_STEPS ?= 300
GATYS_SNAPSHOTS ?= 50 100
LOSS_NETS ?= vgg19 vgg16
EVAL_NET ?= vgg16
GATYS_ARGS ?=
compare: export weights weights-vgg19
	for net in $(LOSS_NETS); do for photo in $(SAMPLES)/*.jpg; do name=$$(basename $$photo .jpg); \
		$(SC) optimize $$photo styles/$(STYLE).jpg -o $(CMP)/gatys$(GATYS_STEPS)-$$net/$$name.png --loss-net $$net \
			--scales $(COMPARE_SIZE) --steps $(GATYS_STEPS) $(GATYS_ARGS) \
			$(foreach n,$(GATYS_SNAPSHOTS),--snapshot $(n):$(CMP)/gatys$(n)-$$net/$$name.png) || exit 1; done; done
	$(SC) evaluate $(SAMPLES) --style styles/$(STYLE).jpg --size $(COMPARE_SIZE) --loss-net $(EVAL_NET) --out $(CMP) \
		--method $(STYLE)=$(ART)/$(STYLE).fp32.onnx \
		$(foreach net,$(LOSS_NETS),$(foreach n,$(GATYS_SNAPSHOTS) $(GATYS_STEPS),--method gatys$(n)-$(net)=$(CMP)/gatys$(n)-$(net)))
	@echo "open $(CMP)/report.md and $(CMP)/contact.png"

optimize-demo: weights-vgg19
	$(SC) optimize $(SAMPLES)/astronaut.jpg styles/$(STYLE).jpg -o $(ART)/optimize/astronaut.png \
		--scales 192,320,512 --steps 100,40,20

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf artifacts .pytest_cache
