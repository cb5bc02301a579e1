"""``make chaos``: the stress workload while a server is killed, failed over or restarted.

Each scenario (:mod:`lockyard.chaos.scenarios`) starts its backend's server, runs the stress
workload (:mod:`lockyard.stress.workload`) on a few connections, breaks the server mid-run and
brings it back, keeps the workload going, then reads everything back. It reports operations
attempted and failed, how long callers saw errors, whether every operation recovered on the
same connections, the slowest failure against the operation timeout, and the invariant
violations (:mod:`lockyard.chaos.driver`).
"""
