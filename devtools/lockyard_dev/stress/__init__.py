"""``make stress``: every backend under concurrent load, with invariants checked as it runs.

``python -m lockyard_dev.stress --backends memory,redis,sentinel,postgresql,dynamodb
--duration 60 --tasks 64`` starts each backend's server itself (:mod:`lockyard_dev.servers.launch`),
drives it with a mix of every store operation and lock cycle (:mod:`lockyard_dev.stress.workload`),
checks the invariants of :mod:`lockyard_dev.stress.invariants`, and prints a table per backend
(:mod:`lockyard_dev.stress.report`). Exit status 1 on any violation. The chaos scenarios of
:mod:`lockyard_dev.chaos` run the same workload while they break the servers.
"""
