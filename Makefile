# The README's two commands: `make run` and `make test`. Everything they need is installed from here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-all alertmanager bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/alertpilot

# Prometheus Alertmanager (+ amtool) for the real-peer test, from Debian's archive when missing.
alertmanager:
	@if ! command -v prometheus-alertmanager >/dev/null 2>&1 && ! command -v alertmanager >/dev/null 2>&1; then \
		echo "installing prometheus-alertmanager (Debian package) for the real-peer test"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus-alertmanager >/dev/null; \
	fi

test: $(VENV)/.installed-test alertmanager
	$(PY) -m pytest -q

bench: $(VENV)/.installed-test
	$(PY) bench/ingest.py

clean:
	rm -rf $(VENV) *.egg-info
