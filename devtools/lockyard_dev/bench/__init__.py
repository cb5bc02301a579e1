"""``make bench``: Lockyard's store operations and lock cycles, measured on real servers.

Modules, one purpose each:

- :mod:`~lockyard_dev.bench.stats`: timing loops (sequential, concurrent), percentiles, spreads;
- :mod:`~lockyard_dev.bench.store_ops`: what each store-operation benchmark calls, on what data;
- :mod:`~lockyard_dev.bench.lock_cycles`: uncontended and contended lock cycles, exclusion checks;
- :mod:`~lockyard_dev.bench.baselines`: the raw driver making the same single round trip;
- :mod:`~lockyard_dev.bench.peers`: peer lock libraries wrapped as lock-cycle handles;
- :mod:`~lockyard_dev.bench.scenarios`: variants of a Lockyard connection (the extension point);
- :mod:`~lockyard_dev.bench.servers`: starting each backend's server;
- :mod:`~lockyard_dev.bench.runner`: one target's passes;
- :mod:`~lockyard_dev.bench.results`: the data;
- :mod:`~lockyard_dev.bench.goals`, :mod:`~lockyard_dev.bench.report`,
  :mod:`~lockyard_dev.bench.chart`: the goals checked, the Markdown report and terminal tables,
  the PNG chart;
- :mod:`~lockyard_dev.bench.cli`: ``python -m lockyard_dev.bench``.

Benchmarks are never timed tests; ``tests/bench`` only smoke-tests the whole run on memory.
"""
