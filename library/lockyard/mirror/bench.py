"""The ``mirroring-on`` benchmark scenario: the same connection, with its locks mirrored.

``lockyard.bench`` compares a scenario's lock cycles with the default's; this one attaches a
:class:`~lockyard.mirror.LeaseMirror` writing to the cluster of ``$KUBECONFIG`` (``make
cluster-up`` prints it) in namespace ``$LOCKYARD_BENCH_NAMESPACE`` (default ``default``), as
store ``bench``. The goal it measures: cycles with mirroring on run at >= 0.95x the rate with it
off (the mirror's callbacks are a few dict operations; its API writes are coalesced, paced and
run in its own thread).

Register it in ``lockyard.bench.scenarios``::

    Scenario("mirroring-on", "every held lock mirrored into a Lease", setup=mirroring_on)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from lockyard.connection import Connection
from lockyard.errors import ConfigError

STORE = "bench"


@contextlib.asynccontextmanager
async def mirroring_on(connection: Connection) -> AsyncIterator[None]:
    """Mirror ``connection``'s locks for the duration of the block; report the mirror's work."""
    if not os.environ.get("KUBECONFIG"):
        raise ConfigError(
            "the mirroring-on scenario needs a cluster: run `make cluster-up` and export the "
            "KUBECONFIG it prints"
        )
    from lockyard.mirror.lease_mirror import enable_lease_mirroring

    namespace = os.environ.get("LOCKYARD_BENCH_NAMESPACE", "default")
    mirror = enable_lease_mirroring(connection, STORE, namespace)
    try:
        yield
    finally:
        await mirror.close()
