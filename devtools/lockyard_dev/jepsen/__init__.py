"""Jepsen-style testing: network faults through toxiproxy, histories checked for linearizability.

Worker processes (:mod:`.worker`) run concurrent store and lock operations through proxies of
their own and record every invocation and completion (:mod:`.history`); the controller
(:mod:`.run`) injects the faults of a scenario (:mod:`.scenarios`) with toxiproxy's REST API
(:mod:`.toxiproxy`), then checks the merged history with the porcupine checker under
``tools/porcupine`` (:mod:`.checker`) and the fencing and lock-loss checks (:mod:`.checks`).
``make jepsen`` runs every backend and scenario; figures are in ``docs/reliability.md``.
"""
