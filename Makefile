# ssd: `make install` then `make test`. Everything runs from the project's .venv.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# torch/torchvision pinned together: on CPU-only machines pip takes the local CPU wheel
# (see README "Install"); on GPU machines the same pins install the ordinary CUDA build.
TORCH   ?= torch==2.13.0 torchvision==0.28.0
ARGS    ?=
SWEEP   ?= experiments/cpu_compare.sh
RUNS    ?= outputs/multiruns

.PHONY: install test test-all lint format train quick sweep report bench wheel clean

install: $(BIN)/ssd-installed
$(BIN)/ssd-installed: pyproject.toml setup.py Makefile tools/patch_torchvision.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q $(TORCH)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[dev]"
	$(BIN)/python tools/patch_torchvision.py
	$(BIN)/python -c "import ssd, lightning, torchvision, hydra; print('ssd installed: torch', __import__('torch').__version__, 'torchvision', torchvision.__version__)"
	touch $@

test: install          ## fast suite, one worker per core (pytest-xdist; whole test files per worker)
	$(BIN)/pytest -q -n auto --dist loadfile

test-all: install      ## everything, slow end-to-end and real-data tests included
	$(BIN)/pytest -q -n auto --dist loadfile -m "slow or not slow"

lint: install
	$(BIN)/ruff check ssd tests tools
	$(BIN)/ruff format --check ssd tests tools

format: install
	$(BIN)/ruff format ssd tests tools
	$(BIN)/ruff check --fix ssd tests tools

train: install         ## the default research run; pass overrides: make train ARGS="strategy=self_distill noise.sigma=0.2"
	$(BIN)/python -m ssd.run $(ARGS)

quick: install         ## minutes on a CPU: ResNet-20 on the offline CIFAR-10 subset
	SSD_DATA_DIR=$${SSD_DATA_DIR:-../shared/data} $(BIN)/python -m ssd.run experiment=cpu_quick $(ARGS)

sweep: install         ## the CPU-scale comparison sweep (see experiments/)
	bash $(SWEEP) $(ARGS)

report: install        ## table + plots from sweep folders: make report RUNS=outputs/multiruns/<sweep>
	$(BIN)/python -m ssd.report $(RUNS)

bench: install         ## training-step throughput of every strategy vs a hand-written loop
	$(BIN)/python -m ssd.bench $(ARGS)

wheel: install         ## dist/ssd-*.whl: `pip install` it anywhere; it carries conf/ as ssd/conf
	$(BIN)/pip wheel --disable-pip-version-check --no-deps --no-build-isolation -w dist .
	rm -rf build

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist
