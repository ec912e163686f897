# The course's commands. Each target sets up what it needs first (idempotent).
#   make book     build the book (every lesson executed, warnings as errors) into _build/html
#   make test     run the whole test suite
#   make release  regenerate notebooks/ (student versions) from solutions/ with nbgrader
#   make grade SUBMISSIONS=path/to/submissions [ASSIGNMENT=chNN] [OUT=_grading]   autograde (sandboxed), feedback HTML, grades CSV
#   make lab      open JupyterLab on the course

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.clipcourse-installed
SUBMISSIONS ?=
ASSIGNMENT ?=
OUT ?= _grading
# Threads per process: 2-core laptops and CI machines.
export OMP_NUM_THREADS ?= 2
export PYDEVD_DISABLE_FILE_VALIDATION = 1

.PHONY: setup book test release grade lab clean

setup: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	@# grading runs student code in bubblewrap (system package); skipped when already installed
	command -v bwrap >/dev/null || { if command -v apt-get >/dev/null; then \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) sh -c 'apt-get update -qq && apt-get install -y -qq bubblewrap'; \
	  else echo "install bubblewrap (bwrap) with your system's package manager: grading needs it"; fi; }
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
	@test -n "$(SUBMISSIONS)" || (echo "usage: make grade SUBMISSIONS=folder [ASSIGNMENT=chNN] [OUT=_grading]" && exit 2)
	$(BIN)/python -m autograder.course grade "$(SUBMISSIONS)" --out "$(OUT)" $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))

lab: setup
	$(BIN)/jupyter lab --notebook-dir=.

clean:
	rm -rf _build _grading .pytest_cache
