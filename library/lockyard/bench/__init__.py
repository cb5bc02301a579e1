"""``make bench``: Lockyard's store operations and lock cycles, measured on real servers.

Modules, one purpose each:

- :mod:`~lockyard.bench.stats`: timing loops (sequential, concurrent), percentiles, spreads;
- :mod:`~lockyard.bench.store_ops`: what each store-operation benchmark calls, on what data;
- :mod:`~lockyard.bench.lock_cycles`: uncontended and contended lock cycles, exclusion checks;
- :mod:`~lockyard.bench.baselines`: the raw driver making the same single round trip;
- :mod:`~lockyard.bench.peers`: peer lock libraries wrapped as lock-cycle handles;
- :mod:`~lockyard.bench.scenarios`: variants of a Lockyard connection (the extension point);
- :mod:`~lockyard.bench.servers`: starting each backend's server;
- :mod:`~lockyard.bench.runner`: one target's passes; :mod:`~lockyard.bench.results`: the data;
- :mod:`~lockyard.bench.goals`, :mod:`~lockyard.bench.report`, :mod:`~lockyard.bench.chart`:
  the goals checked, the Markdown report and terminal tables, the PNG chart;
- :mod:`~lockyard.bench.cli`: ``python -m lockyard.bench``.

Benchmarks are never timed tests; ``tests/bench`` only smoke-tests the whole run on memory.
"""
