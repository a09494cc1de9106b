# cvkit: every target sets up .venv itself (see tools/venv.sh).
VENV := .venv
BIN  := $(VENV)/bin

.PHONY: venv browser demo test test-slow test-notebooks test-pytest check-export lint-imports lab bench figures clean

venv:
	@bash tools/venv.sh

## The system Chromium that the browser tests of the widgets drive (installed with apt-get when missing).
browser:
	@bash tools/browser.sh

## Train a digit classifier on the built-in dataset (about 15 s on a laptop CPU).
demo: venv
	$(BIN)/cvkit train --out cvkit-out/digits

## Everything CI runs: exported code in sync with the notebooks, every notebook, pytest.
test: venv check-export lint-imports test-notebooks test-pytest

## The cells flagged `#| slow` (longer searches, retraining the bundled backbones): every notebook that has some, with them.
SLOW_NOTEBOOKS = $(shell grep -l '"\#| slow' nbs/*.ipynb nbs/tutorials/*.ipynb nbs/maintainers/*.ipynb)
test-slow: venv
	@for nb in $(SLOW_NOTEBOOKS); do echo "== $$nb (with its #| slow cells)"; $(BIN)/nbdev-test --flags slow --timing $$nb || exit 1; done

check-export: venv
	@bash tools/check_export.sh

## The layers of pyproject.toml's [tool.importlinter]: no module imports from a later step of the workflow, no circles.
lint-imports: venv
	$(BIN)/lint-imports --no-cache

## Notebooks and pytest files run TEST_WORKERS at a time, each on TEST_THREADS torch threads: on 2 cores, one thread
## each ran two tutorials side by side in 65 s against 136 s with torch's default of one thread per core (oversubscribed).
TEST_WORKERS ?= 2
TEST_THREADS ?= 1
test-notebooks: venv
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/nbdev-test --n-workers $(TEST_WORKERS) --timing

## pytest runs its test files on TEST_WORKERS processes (each file's tests stay in one process, sharing its fixtures),
## the longest files first (tests/conftest.py: LONGEST_FIRST).
test-pytest: venv browser
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15 tests

## JupyterLab on the notebooks.
lab: venv
	$(BIN)/jupyter lab nbs/

## Benchmarks that take minutes on a CPU: side-by-side figures printed to the terminal and saved under
## benchmarks/results/, then every figure quoted in README.md and nbs/index.ipynb rendered from them.
## The others (transfer, experiments, audit, speedrun, lr_find, throughput, gpu_suite.sh) take longer or need a
## GPU: each script's docstring gives its command; run `make figures` after them.
bench: venv
	$(BIN)/python benchmarks/quickstart.py --json benchmarks/results/quickstart-cpu.json
	$(BIN)/python benchmarks/overhead.py --json benchmarks/results/overhead-cpu.json
	$(BIN)/python benchmarks/inference.py --json benchmarks/results/inference-cpu.json
	$(BIN)/python benchmarks/scaling.py --json benchmarks/results/scaling-cpu.json
	$(MAKE) figures

## Rewrite every figure quoted in README.md and nbs/index.ipynb from benchmarks/results (tools/figures.py).
figures: venv
	$(BIN)/python tools/figures.py

clean:
	rm -rf cvkit-out build dist *.egg-info _proc
