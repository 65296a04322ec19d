# Two commands do all set-up on a fresh machine:
#   make main   -> create .venv, install, run the main job on the embedded default (CPU, no download)
#   make test   -> create .venv, install, run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision pinned to the CPU-capable builds this project is tested with.
TORCH := torch==2.14.1 torchvision==0.29.1

$(BIN)/hf-srdistill: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH) -e ".[dev]"
	touch $@

.PHONY: install main test bench
install: $(BIN)/hf-srdistill

main: install
	$(BIN)/hf-srdistill main --config configs/main_mini.yaml

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python scripts/bench_distill.py
