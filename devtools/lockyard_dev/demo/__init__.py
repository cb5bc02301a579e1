"""``make demo``: Lockyard end to end on a local control plane; see :mod:`lockyard_dev.demo.run`."""
