# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3
NPM_OK := labextension/node_modules/.package-lock.json
LABEXT := nbflow/labextension/static/style.js
LABSRC := $(wildcard labextension/src/*.ts) labextension/style/base.css \
          labextension/style/index.css labextension/style/index.js labextension/package.json \
          labextension/tsconfig.json labextension/scripts/palette_css.py nbflow/palette.py

.PHONY: demo test lint bench sysdeps labextension clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Node packages for the JupyterLab extension, from the lock file.
$(NPM_OK): labextension/package-lock.json | sysdeps
	cd labextension && npm ci --no-audit --no-fund --loglevel=error

# Servers the tests start on 127.0.0.1 (Azurite, for az:// stores), from the lock file.
SERVERS := tests/servers/node_modules/.package-lock.json
$(SERVERS): tests/servers/package-lock.json | sysdeps
	cd tests/servers && npm ci --no-audit --no-fund --loglevel=error

# Installing the package builds the extension once (hatch-jupyter-builder) if it is missing.
$(STAMP): pyproject.toml $(NPM_OK) | $(PY)
	$(PY) -m pip install --quiet -e '.[test,dask,s3]'
	touch $(STAMP)

# Rebuilt only when its sources changed; the venv's JupyterLab then loads the fresh build
# (an editable install copied the first one).
LABDEST := $(VENV)/share/jupyter/labextensions/jupyter-nbflow
$(LABEXT): $(LABSRC) $(STAMP)
	cd labextension && PATH="$(abspath $(VENV))/bin:$$PATH" npm run --silent build:prod
	rm -rf $(LABDEST) && ln -s $(abspath nbflow/labextension) $(LABDEST)
	touch $(LABEXT)

labextension: $(LABEXT)

# Debian packages (graphviz for layouts, chromium for the browser tests, which Playwright
# drives at /usr/bin/chromium: it never downloads a browser of its own, node and npm for
# the JupyterLab extension); installed only when missing and we are root.
sysdeps:
	@need=""; \
	command -v dot >/dev/null 2>&1 || need="$$need graphviz"; \
	[ -x /usr/bin/chromium ] || need="$$need chromium"; \
	command -v npm >/dev/null 2>&1 || need="$$need nodejs npm"; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$need"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need) >/dev/null; \
	  else echo "warning: missing$$need; install with: apt-get install$$need"; fi; \
	fi

demo: $(STAMP) $(LABEXT)
	$(PY) examples/demo.py

SOURCES := nbflow tests examples conftest.py $(wildcard benchmarks) labextension/scripts

lint: $(STAMP)
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: $(STAMP) sysdeps $(LABEXT) $(SERVERS) lint
	cd labextension && npx --no-install jest --silent
	$(VENV)/bin/pytest -p no:cacheprovider; rc=$$?; if [ $$rc = 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .nbflow build dist labextension/lib nbflow/labextension
