# Every target installs what it needs into .venv first (one command on a fresh machine).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
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

.PHONY: install test lint format train sweep bench bench-accuracy clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest

# The Python sources; the notebooks are generated from a template and checked by their own test.
PY_SOURCES = cifarlib tests conftest.py

lint: install
	$(BIN)/python -m ruff format --check $(PY_SOURCES)
	$(BIN)/python -m ruff check $(PY_SOURCES)

format: install
	$(BIN)/python -m ruff format $(PY_SOURCES)

train: install
	$(BIN)/python -m cifarlib train $(PRESET_FLAG) --data $(DATA) --fallback-synthetic \
		--epochs $(EPOCHS) --train-size $(TRAIN_SIZE) $(BATCH_FLAG) --workspace $(WORKSPACE)

sweep: install
	$(BIN)/python -m cifarlib sweep $(BATCH_SIZES_FLAG) $(PRESET_FLAG) --epochs $(EPOCHS) --data $(DATA) \
		--train-size $(TRAIN_SIZE) --workspace $(WORKSPACE)

# `make bench`: training throughput, the reference notebook's way against cifarlib's (KERAS_BACKEND picks the backend);
# BENCH_STEPS and BATCH_SIZE are passed only when set.
BENCH_STEPS_FLAG = $(if $(BENCH_STEPS),--steps $(BENCH_STEPS))

bench: install
	$(BIN)/python -m cifarlib bench $(BATCH_FLAG) $(BENCH_STEPS_FLAG)

# `make bench-accuracy`: the real training images (skips cleanly where absent). ACCURACY_DATA, ACCURACY_EPOCHS,
# ACCURACY_SEEDS, ACCURACY_WIDTH and ACCURACY_RECIPES are passed only when set (the command's defaults otherwise).
ACCURACY_FLAGS = $(if $(ACCURACY_DATA),--data $(ACCURACY_DATA)) $(if $(ACCURACY_EPOCHS),--epochs $(ACCURACY_EPOCHS)) \
	$(if $(ACCURACY_SEEDS),--seeds $(ACCURACY_SEEDS)) $(if $(ACCURACY_WIDTH),--width $(ACCURACY_WIDTH)) \
	$(if $(ACCURACY_RECIPES),--recipes $(ACCURACY_RECIPES))

bench-accuracy: install
	$(BIN)/python -m cifarlib bench-accuracy $(ACCURACY_FLAGS) --workspace $(WORKSPACE)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
