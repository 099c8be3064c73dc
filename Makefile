# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch's CPU build: on the course's CI machines this exact version is available locally.
# Elsewhere, set TORCH_SPEC to what suits your machine (e.g. TORCH_SPEC=torch for the default build).
TORCH_SPEC ?= torch==2.13.0
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
EXERCICES := $(sort $(wildcard exercices/[0-9][0-9]_*.ipynb))
# CI and `make run` always use the embedded course models (no network).
export COURSE_EMBEDDED_MODELS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test test-fast test-real lint models bench exercices colab-links clean

# Also registers the course's Jupyter kernel (tools/kernelspec.py), the one the notebooks name; again each time.
install: $(VENV)/.installed
	$(BIN)/python -m tools.kernelspec --install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

run: install
	mkdir -p build
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ClearMetadataPreprocessor.enabled=True \
		"--ClearMetadataPreprocessor.preserve_nb_metadata_mask=[('language_info','name'),'kernelspec','widgets']" \
		$(NOTEBOOKS)
	$(BIN)/python -m tools.html_export notebooks build

lint: install
	$(BIN)/ruff check helpers training tools tests bench

# pytest runs in PYTEST_WORKERS processes (pytest-xdist, whole files to a worker), each on one thread: two torch
# processes of two threads on two cores wait on each other (a batched QR of notebook 04 took 100 s instead of 1).
# The files are handed out in collection order, where tests/conftest.py puts the slow tests first.
PYTEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The full gate: lint, every level of tests/ (unit, notebooks, course_models, real_path), then nbval, which
# re-executes the notebooks under four simulated CPUs and compares them with the committed outputs.
test: install lint
	$(PYTEST) -m "not alone" --durations=10 tests
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m alone tests
	tests/run_variants.sh $(BIN)/python $(NOTEBOOKS)

# For development, under two minutes: lint, then tests/unit and tests/notebooks less the tests marked slow (no
# training, notebook execution or browser); tests/course_models and tests/real_path are make test's.
test-fast: install lint
	$(PYTEST) -m "not slow and not alone" tests/unit tests/notebooks
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "alone and not slow" tests/unit tests/notebooks

# The notebooks on the real loading path (COURSE_EMBEDDED_MODELS unset) at the real models' shapes, on a fake
# Hugging Face cache filled by the README's `hf download` commands (random weights); prints time and peak memory.
test-real: install
	$(BIN)/python -m tests.real_path.run --scale real

# Retrain the embedded models (hours of CPU; resumable: rerun to continue). Never run in CI.
# training/ runs from this checkout (it is not installed): its state goes to $COURSE_RUNS_DIR (~/course-runs by
# default), its output to data/models.
models: install
	$(BIN)/python -m training.train course-attn-only-2l
	$(BIN)/python -m training.train course-gpt2
	$(BIN)/python -m training.train course-othello-gpt
	$(BIN)/python -m training.train course-llama

bench: install
	$(BIN)/python -m bench --notebooks

# The learner's notebooks: exercices/NN_*.ipynb, the notebooks with each solution replaced by its stub.
exercices: install
	$(BIN)/python -m tools.make_exercices

# Pin the Colab badges (README) and the notebooks' Colab cells to the public repository at REF, a tag
# created on the commit that records this change (tools/colab_links.py).
colab-links:
	$(PYTHON) -m tools.colab_links --repo "$(REPO)" --ref "$(REF)" README.md $(NOTEBOOKS) $(EXERCICES)

clean:
	rm -rf build .pytest_cache
