"""Pool generations: how the connections of one handle learn that their server went away.

A connection that finds its server gone moves the generation on; every connection opened in an
older generation predates that death and is retired (closed and re-opened) when next used,
instead of failing one more operation each (:mod:`.pool`, :mod:`.autopipeline`).
"""

from __future__ import annotations

from redis import exceptions as rx

#: What redis-py is handling when it drops a connection whose server end is gone (a reset, an
#: end of stream, a refused connect) or, ``READONLY``, is no longer the master.
DEAD_SERVER = (rx.ConnectionError, rx.ReadOnlyError, OSError)


class Generations:
    """Counts the connections of one pool found dead: a connection opened in an older
    generation predates the last one, and is retired."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current = 0
