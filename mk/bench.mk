# `make bench`: Lockyard's store operations and lock cycles against the raw drivers and the
# peer lock libraries, on real servers the benchmark starts itself. Never part of `make test`:
# tests/bench only smoke-tests the whole run on memory://. Results: bench/results/.

BENCH_OUT       ?= bench/results
BENCH_ARGS      ?=
BENCH_SCENARIOS ?= default,mirroring-on,pooled,elections,fenced,permits

.PHONY: bench bench-smoke

# The peer libraries (python-redis-lock, pottery, aioredlock, tooz, psycopg2-binary), resolved
# together with every other extra: tooz's newest debtcollector wants wrapt>=2, aiobotocore wrapt<2.
$(VENV)/.bench-installed: pyproject.toml devtools/pyproject.toml constraints.txt $(VENV)/.installed
	$(PIP) install -q -c constraints.txt -e '.[all,dev]' -e './devtools[bench]'
	touch $@

# Lease mirroring is measured against a throwaway control plane that `run` starts and stops.
# Then what telemetry costs on Redis (hooks absent / no SDK / SDK on; goal: no SDK >= 0.97x), on
# a redis-server of its own, into telemetry.md beside the report (not when URL= names a target).
bench: controlplane $(VENV)/.bench-installed  ## Benchmark every backend vs raw drivers and peers, mirroring on/off (URL=..., BENCH_ARGS=...)
	$(PY) -m lockyard_dev.cluster.controlplane run -- \
		$(PY) -m lockyard_dev.bench $(if $(URL),--url '$(URL)',) --scenarios $(BENCH_SCENARIOS) \
		--out $(BENCH_OUT) $(BENCH_ARGS)
	$(if $(URL),,$(PY) -m lockyard_dev.bench.telemetry_cost --json $(BENCH_OUT)/telemetry.json \
		> $(BENCH_OUT)/telemetry.md && cat $(BENCH_OUT)/telemetry.md)

bench-smoke: $(VENV)/.installed  ## Run the benchmark's end-to-end smoke test (memory://, tiny iteration counts)
	$(PY) -m pytest tests/bench -q
