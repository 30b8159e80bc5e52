# Every target installs what it needs into .venv first (one command on a fresh machine).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKSPACE ?= workspace
# `make train`: a short run of the seed network (CIFAR-10 from Keras, or synthetic data without a network).
PRESET ?= seed
EPOCHS ?= 2
TRAIN_SIZE ?= 5000
BATCH_SIZE ?= 256
# `make sweep`: batch sizes to compare.
BATCH_SIZES ?= 64,128,256,512
DATA ?= keras

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

lint: install
	$(BIN)/python -m ruff check cifarlib tests

format: install
	$(BIN)/python -m ruff format cifarlib tests

train: install
	$(BIN)/python -m cifarlib train --preset $(PRESET) --data $(DATA) --fallback-synthetic \
		--epochs $(EPOCHS) --train-size $(TRAIN_SIZE) --batch-size $(BATCH_SIZE) --workspace $(WORKSPACE)

sweep: install
	$(BIN)/python -m cifarlib sweep --batch-sizes $(BATCH_SIZES) --epochs $(EPOCHS) --data $(DATA) \
		--train-size $(TRAIN_SIZE) --workspace $(WORKSPACE)

# `make bench`: training throughput, the reference notebook's way against cifarlib's (KERAS_BACKEND picks the backend).
BENCH_STEPS ?= 20

bench: install
	$(BIN)/python -m cifarlib bench --batch-size 256 --steps $(BENCH_STEPS)

# `make bench-accuracy`: the real training images beside the repository (skips cleanly where absent).
ACCURACY_DATA ?= ../shared/data/cifar10-jpeg-train.tar.gz
ACCURACY_EPOCHS ?= 10
ACCURACY_SEEDS ?= 0
ACCURACY_WIDTH ?= 1.0
ACCURACY_RECIPES ?= seed,tuned

bench-accuracy: install
	$(BIN)/python -m cifarlib bench-accuracy --data $(ACCURACY_DATA) --epochs $(ACCURACY_EPOCHS) \
		--recipes $(ACCURACY_RECIPES) --seeds $(ACCURACY_SEEDS) --width $(ACCURACY_WIDTH) --workspace $(WORKSPACE)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
