# Two commands a newcomer needs (see README.md):
#   make demo   set everything up, then run the main job on the built-in small model
#   make test   set everything up, then run the test suite
# Both create .venv with the pinned CPU torch (constraints.txt) on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: setup demo test test-long clean

$(BIN)/dmpo: pyproject.toml setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	@# the distribution was called dmpo before it became dllm-dmpo: an old install would list every entry point twice
	$(BIN)/python -m pip uninstall -y -q dmpo 2>/dev/null || true
	$(PIP) -e ".[test]"
	$(PIP) -e plugins/dmpo-example-weighting
	@# DeepSpeed compiles its CPU communication op at first use (about a minute): once here, not in a test
	DS_ACCELERATOR=cpu $(BIN)/python -c "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder; ShareMemCommBuilder().load()" >/dev/null
	@touch $@

setup: $(BIN)/dmpo

demo: setup
	$(BIN)/dmpo train --backend llada --task sudoku --model builtin:sudoku-tiny --output-dir runs/demo --overwrite

test: setup
	$(BIN)/dmpo plugins | grep -q example-tempered || { echo "the example plugin is not listed by 'dmpo plugins'"; exit 1; }
	$(BIN)/python -m pytest -q tests plugins/dmpo-example-weighting/tests

test-long: setup
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest -q tests/properties plugins/dmpo-example-weighting/tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
