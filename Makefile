# canfvc — set-up, tests, demo and benchmarks. Every target installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_LAMBDA ?= 1024
DEMO_FRAMES ?= 3
DEMO_INTRA_CODERS ?= anfic,hevc

.PHONY: install test demo bench lint clean data wheel

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(PY) -m canfvc_codec.datasets --all
	$(PY) -m canfvc_codec.train.data

test: $(STAMP)
	$(PY) -m canfvc_codec.datasets
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -q -x

lint: $(STAMP)
	$(VENV)/bin/ruff check canfvc_codec tests tools
	$(VENV)/bin/ruff format --check canfvc_codec tests tools
	$(PY) tools/import_cycles.py canfvc_codec

demo: $(STAMP)
	$(PY) -m canfvc_codec.demo --lambda $(DEMO_LAMBDA) --frames $(DEMO_FRAMES) \
		--intra-coders $(DEMO_INTRA_CODERS)

bench: $(STAMP)
	$(PY) -m canfvc_codec.lab.bench --out bench/results

# A wheel with the published models as package data: pip install dist/canfvc-*.whl
wheel: $(STAMP)
	$(PY) -m pip wheel . --no-deps -w dist

clean:
	rm -rf $(VENV) build dist *.egg-info
