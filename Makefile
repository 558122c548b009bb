# One entry point for people and CI. Everything installs into .venv from
# pyproject.toml, so a machine with only Python can run every target.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test kafka apicurio prometheus browser bench lint fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,feast]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/driftline demo

# Two pytest-xdist processes: the integration tests mostly wait (on brokers, rebalances,
# timers), so two at once take the suite from about 35 to about 21 minutes on 2 cores. Tests
# that share a costly broker fixture stay in one process (tests/conftest.py). More processes
# mean more broker JVMs: TEST_PROCESSES=1 runs it in one.
TEST_PROCESSES ?= 2

test: $(STAMP) kafka apicurio prometheus browser
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadgroup

# The Apache Kafka jars the integration tests run (pinned in infra/kafka/pom.xml), fetched
# by Maven into .cache/ once; needs java and mvn, and says what to install if they're missing.
kafka: $(STAMP)
	$(BIN)/python -m driftline.streams.embedded.kafka_local install

# The schema registry the integration tests run (Apicurio Registry, pinned in
# infra/apicurio/pom.xml), fetched by Maven and unpacked into .cache/ once; needs mvn to fetch
# and a Java 21+ to run, and says what to install if either is missing.
apicurio: $(STAMP)
	$(BIN)/python -m tests.integration.apicurio install

# Debian's Prometheus and Alertmanager for the alerting tests (pinned in
# tests/integration/debian_tools.py): `apt-get download` and `dpkg-deb -x` into .cache/debian
# once, no root needed; binaries already on PATH are used as they are.
prometheus: $(STAMP)
	$(BIN)/python -m tests.integration.debian_tools install

# Debian's Chromium for the dashboard's browser test (with its ~130 libraries: apt, as root);
# skipped when chromium is already on PATH.
browser: $(STAMP)
	$(BIN)/python -m tests.integration.debian_tools install-chromium

bench: $(STAMP)
	$(BIN)/python bench/bench_single_record.py
	$(BIN)/python bench/bench_audit.py
	$(BIN)/python -m bench.bench_frames
	$(BIN)/python -m bench.bench_drift
	$(BIN)/python -m bench.bench_drift_stage
	$(BIN)/python -m bench.bench_device
	$(BIN)/python -m bench.bench_ab_simulation
	$(BIN)/python -m bench.bench_policy
	$(BIN)/python -m bench.bench_brokers
	$(BIN)/python -m bench.bench_imports
	$(BIN)/python -m bench.bench_metrics
	$(BIN)/python -m bench.bench_enrichment

# Quix Streams and Bytewax for bench.bench_peers, each in a venv of its own under .cache/bench-venvs
# (they pin their own confluent-kafka; bench-only, never runtime dependencies); kept once made.
.PHONY: bench-peers-venvs
bench-peers-venvs: $(STAMP)
	$(BIN)/python -m bench.peers.venvs

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m tests.import_contracts

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .driftline .pytest_cache
