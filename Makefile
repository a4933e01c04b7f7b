# ringpool — set-up, test, demo. Every target runs the install steps it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SERVERS := $(VENV)/.servers
PACKAGES := -e ./sdk[cli,dashboard] -e ./node -e ./coordinator

.PHONY: install servers test demo proto lint bench clean

install: $(STAMP) $(SERVERS)

# The three workspace packages, editable, and the development tools.
$(STAMP): pyproject.toml sdk/pyproject.toml node/pyproject.toml coordinator/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PACKAGES) --group dev
	touch $(STAMP)

# ZooKeeper (Debian's jars, run with java) and redis-server for the local cluster, and
# Debian's chromium for the dashboard's browser tests (Playwright drives it).
$(SERVERS):
	@if command -v java >/dev/null && [ -f /usr/share/java/zookeeper.jar ] && command -v redis-server >/dev/null && [ -x /usr/bin/chromium ]; then \
		touch $(SERVERS); \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q zookeeper redis-server chromium && touch $(SERVERS); \
	else \
		echo "ringpool needs java, ZooKeeper, redis-server and chromium. Run as root:"; \
		echo "    apt-get install -y zookeeper redis-server chromium"; \
		exit 1; \
	fi

test: install
	$(PY) -m pytest

demo: install
	$(PY) -m examples.demo

proto: $(STAMP)
	$(PY) proto/generate.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy sdk/ringpool sdk/pytest_ringpool.py node/ringpool_node coordinator/ringpool_coordinator

bench: install
	$(PY) -m pip install --quiet --group bench
	# arq 0.28 pins redis<6 but runs on redis-py 8: installed without its pins.
	$(PY) -m pip install --quiet --no-deps arq==0.28.0
	$(PY) -m bench

clean:
	rm -rf $(VENV) build dist */build */dist *.egg-info */*.egg-info .pytest_cache .mypy_cache .ruff_cache
