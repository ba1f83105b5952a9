# teleconsult — the two commands a new machine needs are `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
RUNTIME_STAMP := $(VENV)/.installed-runtime
# System programs the tests drive for real (Debian 12 package names), and the CJK font
# the ECG paper and the signed reports are drawn with.
SYSTEM_PACKAGES := redis-server chromium ffmpeg coturn postgresql poppler-utils fonts-noto-cjk sqlite3 dicom3tools
SYSTEM_PROGRAMS := redis-server chromium ffprobe turnserver psql pdftoppm sqlite3 dciodvfy
SYSTEM_FILES := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
ECG_DIR ?= ../shared/ecg
export TELECONSULT_ECG_DIR ?= $(ECG_DIR)

.PHONY: serve test lint typecheck bench soak sysdeps clean

# `make serve` installs the runtime only; `make test` adds what the tests need.
$(RUNTIME_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	$(PY) -m ecg.warmup
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(RUNTIME_STAMP)
	$(VENV)/bin/teleconsult serve

# Installs the system packages the tests need, only when one is missing;
# `apt-get update` first because a new machine's package lists may be empty.
sysdeps:
	@missing=""; for p in $(SYSTEM_PROGRAMS); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	for f in $(SYSTEM_FILES); do test -e $$f || missing="$$missing $$f"; done; \
	if [ -n "$$missing" ]; then \
		echo "missing:$$missing; installing $(SYSTEM_PACKAGES)"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
		for s in redis-server coturn postgresql; do $$SUDO systemctl disable --now $$s >/dev/null 2>&1 || true; done; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

typecheck: lint

# Two worker processes (pytest-xdist): most tests wait on real servers and browsers.
test: $(STAMP) sysdeps lint
	$(VENV)/bin/pytest -q -n 2

# Each benchmark prints the figures the issues ask for; see bench/README.md.
bench: $(STAMP) sysdeps
	$(VENV)/bin/teleconsult ecg bench $(ECG_DIR)/mitdb --peers xqrs,gqrs --jobs 2
	$(PY) bench/ecg_noise.py
	$(PY) bench/ecg_speed.py
	$(PY) bench/signaling_load.py
	$(PY) bench/first_frame.py --repetitions 20
	$(PY) bench/ecg_live.py
	$(PY) bench/media_forward.py
	$(PY) bench/api.py
	$(PY) bench/consults.py
	$(PY) bench/readings.py
	$(PY) bench/reading_paint.py
	$(PY) bench/ecg_delineation.py
	$(PY) bench/ecg_af.py
	$(PY) bench/ecg_statements.py
	$(PY) bench/critical_latency.py
	$(PY) bench/fuzz.py

# The 30-minute soak of issue 13 (150 carts, rooms, viewers, a SIGKILL half-way): apart,
# it takes the machine for half an hour.
soak: $(STAMP) sysdeps
	$(PY) bench/soak.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
