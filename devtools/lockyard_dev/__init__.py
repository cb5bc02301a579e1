"""Lockyard's development tooling: server launchers, cluster harness, bench, stress, chaos, demo.

Not part of the product: this source root is the ``lockyard-dev`` distribution, installed
editable by ``make install`` and never shipped in the ``lockyard`` wheel or the operator image.
"""
