# Two entry points for newcomers: `make demo` and `make test`.
# Both create .venv on first use. torch is pinned to the CPU build 2.13.0:
# a looser pin makes pip pull a CUDA build of several GB.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)

.PHONY: demo test test-all install clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# timm for the sampled coverage tests: --no-deps, because its declared torchvision
	# dependency would pull a second (CUDA) torch; its other needs are in the dev extra
	$(PY) -m pip install --quiet --no-deps timm
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/prunekit demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m ''

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
