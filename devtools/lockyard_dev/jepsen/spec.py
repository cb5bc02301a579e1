"""What one worker process is told to do (written as JSON by the controller), and key names."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

#: Key families of the data workload and how many keys of each a run shares between workers.
FAMILIES = ("register", "cas", "dedup", "counter")
#: Roles in the one-client-partitioned scenario.
VICTIM, TAKER = "victim", "taker"


#: What a worker drives: a Lockyard store (``url`` is its URL) or the Kubernetes API (``url``
#: is a kubeconfig file).
STORE, KUBE = "store", "kube"


@dataclass(frozen=True)
class WorkerSpec:
    worker: int
    url: str
    run_id: str
    processes: int
    #: The controller writes the start and end (time.monotonic_ns()) here once every worker
    #: is connected (:class:`Schedule`); workers wait for it.
    schedule: str
    #: touched once connected
    ready: str
    seed: int
    history: str
    notes: str
    #: Operations per second over all of this worker's processes (0: as fast as they go).
    rate: float
    keys_per_family: int
    locks: int
    lock_ttl_ms: int
    op_timeout_s: float
    #: "" or VICTIM / TAKER (the partition scenario).
    role: str = ""
    kind: str = STORE

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> WorkerSpec:
        return cls(**json.loads(path.read_text()))


@dataclass(frozen=True)
class Schedule:
    """When the workload runs and when the fault begins and heals (time.monotonic_ns())."""

    start_ns: int
    end_ns: int
    fault_ns: int
    heal_ns: int

    def dump(self, path: Path) -> None:
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self)))
        partial.rename(path)  # atomic: a worker never reads half a file

    @classmethod
    def load(cls, path: Path) -> Schedule:
        return cls(**json.loads(path.read_text()))


def data_key(run_id: str, family: str, index: int) -> str:
    """A canonical StateKey: namespace ``jepsen``, the run as tenant, the family as kind."""
    return f"jepsen:{run_id}:{family}:k{index}"


def lock_name(run_id: str, index: int) -> str:
    return f"jepsen-{run_id}-lock-{index}"


def fence_key(run_id: str, lock: str) -> str:
    """The resource a lock protects: it keeps the highest fencing token that wrote to it."""
    return f"jepsen:{run_id}:fence:{lock}"


def victim_lock(run_id: str) -> str:
    return f"jepsen-{run_id}-victim"
