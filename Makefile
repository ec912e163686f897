# The course's commands. Each target sets up what it needs first (idempotent).
#   make book     build the book (every lesson executed, warnings as errors) into _build/html
#   make test     run the whole test suite
#   make test-transformers4   the text and pretrained-CLIP tests again with transformers 4.x (second venv)
#   make release  regenerate notebooks/ (student versions) from solutions/ with nbgrader
#   make grade SUBMISSIONS=path/to/submissions [ASSIGNMENT=chNN] [OUT=_grading]   autograde (sandboxed), feedback HTML, grades CSV
#   make lab      open JupyterLab on the course
#   make serve [PORT=8000]   the chapter 6 search service on http://127.0.0.1:$(PORT)/

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.clipcourse-installed
SUBMISSIONS ?=
ASSIGNMENT ?=
OUT ?= _grading
PORT ?= 8000
# Threads per process: 2-core laptops and CI machines.
export OMP_NUM_THREADS ?= 2
export PYDEVD_DISABLE_FILE_VALIDATION = 1

.PHONY: setup system book test test-transformers4 release grade lab serve clean

setup: system $(STAMP)

# System packages: bubblewrap (the grading sandbox) and Chromium (browser tests).
# Installed with apt-get when missing and we are root (CI, containers); otherwise named.
SYSTEM_PACKAGES := bubblewrap chromium
system:
	@if ! command -v bwrap >/dev/null || ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "missing system packages: install $(SYSTEM_PACKAGES) (e.g. sudo apt-get install $(SYSTEM_PACKAGES))"; fi; \
	fi

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

# A thin second venv (.venv-tf4) with transformers 4.57.6, tokenizers 0.22, huggingface-hub <1.0 and
# everything else borrowed from $(VENV); tools/test_transformers4.sh without BASE_VENV builds it from the lock file.
test-transformers4: setup
	BASE_VENV=$(VENV) tools/test_transformers4.sh

release: setup
	$(BIN)/python -m autograder.course release

grade: setup
	@test -n "$(SUBMISSIONS)" || (echo "usage: make grade SUBMISSIONS=folder [ASSIGNMENT=chNN] [OUT=_grading]" && exit 2)
	$(BIN)/python -m autograder.course grade "$(SUBMISSIONS)" --out "$(OUT)" $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))

lab: setup
	$(BIN)/jupyter lab --notebook-dir=.

# Builds and caches the Shapes-world index on the first start (about a minute), then starts in seconds.
serve: setup
	$(BIN)/python -m clipcourse.service --host 127.0.0.1 --port $(PORT)

clean:
	rm -rf _build _grading .pytest_cache .venv-tf4
