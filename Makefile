# The course's commands. Each target sets up what it needs first (idempotent).
#   make book     build the book (every lesson executed, warnings as errors) into _build/html
#   make test     run the whole test suite
#   make release  regenerate notebooks/ (student versions) from solutions/ with nbgrader
#   make grade SUBMISSIONS=path/to/submissions [OUT=_grading]   autograde, feedback HTML, grades CSV
#   make lab      open JupyterLab on the course
#   make serve [PORT=8000]   the chapter 6 search service on http://127.0.0.1:$(PORT)/

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.clipcourse-installed
SUBMISSIONS ?=
OUT ?= _grading
PORT ?= 8000
# Threads per process: 2-core laptops and CI machines.
export OMP_NUM_THREADS ?= 2
export PYDEVD_DISABLE_FILE_VALIDATION = 1

.PHONY: setup book test release grade lab serve clean

setup: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

book: setup
	rm -rf _build/html
	$(BIN)/jupyter-book build . --warningiserror --keep-going --path-output .

# Two pytest workers with one thread each: oversubscribed threads make torch many times slower.
test: setup
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadgroup

release: setup
	$(BIN)/python -m autograder.course release

grade: setup
	@test -n "$(SUBMISSIONS)" || (echo "usage: make grade SUBMISSIONS=folder [OUT=_grading]" && exit 2)
	$(BIN)/python -m autograder.course grade "$(SUBMISSIONS)" --out "$(OUT)"

lab: setup
	$(BIN)/jupyter lab --notebook-dir=.

# Builds and caches the Shapes-world index on the first start (about a minute), then starts in seconds.
serve: setup
	$(BIN)/python -m clipcourse.service --host 127.0.0.1 --port $(PORT)

clean:
	rm -rf _build _grading .pytest_cache
