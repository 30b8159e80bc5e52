# Every target installs what it needs into .venv first (one command on a fresh machine).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: the runtime (what `make train` and the other commands need) and the development tools on top.
RUNTIME_STAMP := $(VENV)/.runtime-installed
STAMP := $(VENV)/.installed
WORKSPACE ?= workspace
# `make train`: a short run of the default (tuned) recipe (CIFAR-10 from Keras, or synthetic data without a
# network). PRESET, BATCH_SIZE and BATCH_SIZES are passed only when set; otherwise the preset's and the
# command's own defaults apply (`python -m cifarlib config --preset NAME` prints them).
EPOCHS ?= 2
TRAIN_SIZE ?= 5000
DATA ?= keras
PRESET_FLAG = $(if $(PRESET),--preset $(PRESET))
BATCH_FLAG = $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE))
BATCH_SIZES_FLAG = $(if $(BATCH_SIZES),--batch-sizes $(BATCH_SIZES))

.PHONY: install install-runtime test lint format notebooks train sweep bench bench-accuracy gpu-check gpu-carry gpu-wheels gpu-data dist soak clean

$(RUNTIME_STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# `install-runtime`: what the commands need; `install`: that and the development tools (tests, lint, build).
install-runtime: $(RUNTIME_STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest

# The Python sources; the notebooks are generated from a template and checked by their own test.
PY_SOURCES = cifarlib tests conftest.py scripts notebooks/build/build_notebooks.py

# The credential scan is the pre-commit hook's command (.pre-commit-config.yaml), over every tracked file.
lint: install
	$(BIN)/python -m ruff format --check $(PY_SOURCES)
	$(BIN)/python -m ruff check $(PY_SOURCES)
	$(BIN)/python cifarlib/credentials.py $$(git ls-files)

format: install
	$(BIN)/python -m ruff format $(PY_SOURCES)

# `make notebooks`: rewrite the five notebooks from their template (notebooks/build/build_notebooks.py).
notebooks: install
	$(BIN)/python notebooks/build/build_notebooks.py

train: install-runtime
	$(BIN)/python -m cifarlib train $(PRESET_FLAG) --data $(DATA) --fallback-synthetic \
		--epochs $(EPOCHS) --train-size $(TRAIN_SIZE) $(BATCH_FLAG) --workspace $(WORKSPACE)

sweep: install-runtime
	$(BIN)/python -m cifarlib sweep $(BATCH_SIZES_FLAG) $(PRESET_FLAG) --epochs $(EPOCHS) --data $(DATA) \
		--train-size $(TRAIN_SIZE) --workspace $(WORKSPACE)

# `make bench`: training throughput, the reference notebook's way against cifarlib's (KERAS_BACKEND picks the backend);
# BENCH_STEPS and BATCH_SIZE are passed only when set.
BENCH_STEPS_FLAG = $(if $(BENCH_STEPS),--steps $(BENCH_STEPS))

bench: install-runtime
	$(BIN)/python -m cifarlib bench $(BATCH_FLAG) $(BENCH_STEPS_FLAG)

# `make bench-accuracy`: the real training images, ACCURACY_DATA or else CIFARLIB_ACCURACY_DATA (skips cleanly
# where neither is set; a path named that does not exist is an error). ACCURACY_DATA, ACCURACY_EPOCHS,
# ACCURACY_SEEDS, ACCURACY_WIDTH and ACCURACY_RECIPES are passed only when set (the command's defaults otherwise).
ACCURACY_FLAGS = $(if $(ACCURACY_DATA),--data $(ACCURACY_DATA)) $(if $(ACCURACY_EPOCHS),--epochs $(ACCURACY_EPOCHS)) \
	$(if $(ACCURACY_SEEDS),--seeds $(ACCURACY_SEEDS)) $(if $(ACCURACY_WIDTH),--width $(ACCURACY_WIDTH)) \
	$(if $(ACCURACY_RECIPES),--recipes '$(ACCURACY_RECIPES)')

bench-accuracy: install-runtime
	@if [ -z "$(ACCURACY_DATA)" ] && [ -z "$$CIFARLIB_ACCURACY_DATA" ]; then \
		echo "make bench-accuracy: skipped (no training images named: set ACCURACY_DATA=PATH or CIFARLIB_ACCURACY_DATA)"; \
	else \
		$(BIN)/python -m cifarlib bench-accuracy $(ACCURACY_FLAGS) --workspace $(WORKSPACE); \
	fi

# `make gpu-check OUT=folder`: the GPU path checked in one command, one report (docs/gpu-check.md). No .venv: on a
# GPU machine without network it runs on that machine's Python, with what `make gpu-carry` put in .gpu-carry/.
OUT ?= gpu-check
GPU_CHECK_ARGS ?=

gpu-check:
	$(PYTHON) scripts/gpu_check.py --out $(OUT) $(GPU_CHECK_ARGS)

# `make gpu-carry`: what a bare GPU machine (Python 3.12, JAX, PyTorch, no TensorFlow, no network) lacks, into
# .gpu-carry/ (ignored by git, carried beside the repository): Keras and the two of its dependencies missing
# there as wheels, GPUtil (the memory warning reads free GPU memory through it; published as source only, so it
# is built into a wheel here), and the real training images.
GPU_CARRY ?= .gpu-carry
GPU_PYTHON_VERSION ?= 3.12
GPU_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64,--platform $(p))

gpu-carry: gpu-wheels gpu-data
	du -ch $(GPU_CARRY) | tail -n 1

gpu-wheels:
	rm -rf $(GPU_CARRY)/wheels
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON_VERSION) \
		--implementation cp $(GPU_PLATFORMS) -d $(GPU_CARRY)/wheels "keras>=3.3,<4" namex optree
	$(PYTHON) -m pip wheel --quiet --no-deps -w $(GPU_CARRY)/wheels "GPUtil>=1.4,<2"

gpu-data:
	@test -n "$(ACCURACY_DATA)" || { echo "make gpu-data: set ACCURACY_DATA to cifar10-jpeg-train.tar.gz"; exit 2; }
	mkdir -p $(GPU_CARRY)
	install -m 644 "$(ACCURACY_DATA)" $(GPU_CARRY)/cifar10-jpeg-train.tar.gz

# `make dist`: the wheel and the source distribution that users install, in dist/.
dist: install
	$(BIN)/python -m build --outdir dist .

# `make soak`: random SIGKILLs over real short runs on synthetic data (tiny network), then checks every file.
SOAK_KILLS ?= 20

soak: install-runtime
	$(BIN)/python -m cifarlib.soak --kills $(SOAK_KILLS)

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
