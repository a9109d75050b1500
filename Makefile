# The README's two commands: `make run` and `make test`. Everything they need is installed from here.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-all alertmanager bench bench-report clean

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

# Checks the configuration and every configured connection (read-only); DOCTOR_ARGS=--send also posts a test
# message to each WeCom robot. Exits non-zero when a check FAILs.
.PHONY: doctor
doctor: $(VENV)/.installed
	$(VENV)/bin/alertpilot doctor $(DOCTOR_ARGS)

# Prometheus Alertmanager (+ amtool) for the real-peer test, from Debian's archive when missing.
alertmanager:
	@if ! command -v prometheus-alertmanager >/dev/null 2>&1 && ! command -v alertmanager >/dev/null 2>&1; then \
		echo "installing prometheus-alertmanager (Debian package) for the real-peer test"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus-alertmanager >/dev/null; \
	fi

# The PostgreSQL variants of the service tests use ALERTPILOT_DATABASE_URL; when it is unset and a
# PostgreSQL server answers on the standard local port (as on the project's machines), that one is used.
PG_TEST_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

test: $(VENV)/.installed-test alertmanager
	@if [ -z "$$ALERTPILOT_DATABASE_URL" ] && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then \
		export ALERTPILOT_DATABASE_URL='$(PG_TEST_URL)'; echo "PostgreSQL tests: $(PG_TEST_URL)"; \
	fi; $(PY) -m pytest -q

# Issue 9's figures (README "Performance"): ingest throughput and webhook -> sendMessage latency, the alert storm
# with its chat pacing and RSS trend, memory after 100,000 alerts, and cost growth with the database's size; then
# one table of the targets, met or missed. Storm and growth run their --quick variants (about 9 min in all)
# unless BENCH_FULL=1 (the 60 s storm, a 10-minute soak, up to 1,000,000 stored alerts: about 17 min). JSON
# results go to BENCH_OUT. A failed scenario does not stop the others; the exit status says whether any failed.
BENCH_OUT ?= $${TMPDIR:-/tmp}/alertpilot-bench
BENCH_MODE := $(if $(filter 1,$(BENCH_FULL)),,--quick)
.PHONY: bench-storm bench-growth
bench: $(VENV)/.installed-test
	@mkdir -p "$(BENCH_OUT)"; rc=0; \
	$(PY) bench/ingest.py --json-out "$(BENCH_OUT)/ingest.json" || rc=1; \
	$(PY) bench/storm.py $(BENCH_MODE) --json-out "$(BENCH_OUT)/storm.json" || rc=1; \
	$(PY) bench/growth.py $(BENCH_MODE) --json-out "$(BENCH_OUT)/growth.json" || rc=1; \
	$(PY) bench/targets.py "$(BENCH_OUT)"; \
	echo "results: $(BENCH_OUT)"; exit $$rc

# 10,000 alerts from 200 identities in 60 s against fake Telegram/WeCom with the default pacing, a soak at that
# rate, and RSS after 100,000 alerts (bench/storm.py; BENCH_FULL=1 for the full sizes).
bench-storm: $(VENV)/.installed-test
	$(PY) bench/storm.py $(BENCH_MODE)

# Ingest throughput and daily-report time at 10k, 100k (and with BENCH_FULL=1 1M) stored alerts (bench/growth.py).
bench-growth: $(VENV)/.installed-test
	$(PY) bench/growth.py $(BENCH_MODE)

# Time to the proposal card per decision source (rules, playbook, AI, hanging and failing AI) and fallback counts.
.PHONY: bench-decision
bench-decision: $(VENV)/.installed-test
	$(PY) bench/decision.py

# Daily KPI report time over 1,000,000 alerts / 100,000 incidents generated into a temporary SQLite file;
# BENCH_REPORT_ARGS='--database-url postgresql+asyncpg://… --explain' for PostgreSQL (a scratch database).
bench-report: $(VENV)/.installed-test
	$(PY) bench/report.py $(BENCH_REPORT_ARGS)

clean:
	rm -rf $(VENV) *.egg-info
