# Two commands on a fresh machine:  make demo  (the main job)  and  make test  (the suite).
# Both run `make setup` first; a second setup takes seconds (stamp file).
SHELL := /bin/bash
VENV ?= .venv
QT6_VENV ?= .venv-qt6
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
APT_PACKAGES := python3-qgis python3-venv qgis
VERSION := $(shell sed -n 's/^version=//p' metadata.txt)
export QT_QPA_PLATFORM ?= offscreen
# Debian's QGIS must use its own proj.db, not pyproj's or rasterio's.
unexport PROJ_LIB PROJ_DATA

.PHONY: setup test test-fast lint demo package repo lock bench clean

setup: $(STAMP)

$(STAMP): requirements.in constraints.txt pyproject.toml scripts/setup.sh
	bash scripts/setup.sh "$(VENV)" "$(APT_PACKAGES)" "$(QT6_VENV)"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The unit and in-process tests, on every core (about 70 s on 2): end-to-end runs through
# subprocesses, QGIS tasks, Ray and local servers are marked slow and left to `make test`.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" -n auto --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check paligemma_qgis tests scripts
	$(VENV)/bin/ruff format --check paligemma_qgis tests scripts
	$(VENV)/bin/mypy
	$(PY) scripts/check_qt6.py --pyqt6-python $(QT6_VENV)/bin/python paligemma_qgis

demo: setup
	$(PY) scripts/demo.py

# The plugin zip, dist/paligemma_qgis.<version>.zip, from the files git tracks.
package:
	bash scripts/package.sh "$(VERSION)"

# dist/plugins.xml: a custom plugin repository serving that zip (REPO_URL: where dist/ is published).
REPO_URL ?= https://github.com/paligemma-qgis/paligemma_qgis/releases/download/v$(VERSION)
repo: package
	python3 scripts/plugin_repo.py --zip "dist/paligemma_qgis.$(VERSION).zip" --url "$(REPO_URL)" --out dist/plugins.xml

# The worker's hashed lock files (paligemma_qgis/locks/) from requirements.in + constraints.txt.
lock: setup
	$(PY) scripts/lock_requirements.py

bench: setup
	bash scripts/bench_all.sh

clean:
	rm -rf dist build .pytest_cache
