"""``make stress``: every backend under concurrent load, with invariants checked as it runs.

``python -m lockyard.stress --backends memory,redis,sentinel,postgresql,dynamodb --duration 60
--tasks 64`` starts each backend's server itself (:mod:`lockyard.stress.servers`), drives it with
a mix of every store operation and lock cycle (:mod:`lockyard.stress.workload`), checks the
invariants of :mod:`lockyard.stress.invariants`, and prints a table per backend
(:mod:`lockyard.stress.report`). Exit status 1 on any violation. The chaos scenarios of
:mod:`lockyard.chaos` run the same workload while they break the servers.
"""
