"""Names, labels and annotations of the Leases that mirror held locks.

A Lease name is read by people (``kubectl get leases``), so it starts with the store and the lock
name; it must also be a valid Kubernetes name, and two locks must never share one. The name is::

    lockyard-<store>-<lock>-<hash>

where ``<store>`` and ``<lock>`` are *sanitized* (accents dropped, lowercased, every run of
characters outside ``[a-z0-9]`` turned into one ``-``, trimmed) and *truncated* to fit, and
``<hash>`` is the first
12 hex digits (48 bits) of SHA-256 over the exact store and lock names. Sanitizing and truncating
lose information (``a_b``, ``A.B`` and ``a-b`` all sanitize to ``a-b``); the hash of the exact
names keeps them apart. Names are at most 63 characters, so a Lease name is a DNS-1123 *label*
(not just the 253-character subdomain Kubernetes allows): it stays usable as a label value and
keeps ``kubectl get leases`` narrow. The full lock name is always in the
``lockyard.dev/lock`` annotation, which is what ``lockyard locks`` shows.

A 48-bit hash makes a collision between two live locks of one namespace improbable (about
1 in 10^5 at a million live locks), not impossible, so writers check: the mirror never takes over
a Lease whose ``lockyard.dev/store``/``lockyard.dev/lock`` annotations name another lock, and
instead probes ``lease_name(store, lock, probe=1)``, ``probe=2``, ... (a different hash each).
Readers (the CLI, the reaper) identify a lock by its annotations, never by parsing the name.

A semaphore permit or a read-write lock holder has a Lease of its own: its *key*
(:func:`permit_key`: space, name and fencing token, which the name's counter never hands out
twice) takes the lock's place in the name and the hash, so ``lockyard-orders-semaphore-jobs-7-
<hash>``; its annotations hold the exact name and the fencing token, and its
``lockyard.dev/kind`` label says what it is (:data:`PERMIT_KINDS`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Labels on every mirrored Lease (the CLI and the reaper select on them); re-exported here, with
# the annotations, so a Lease's marks read from one module.
from lockyard.identity import MANAGED_BY_LABEL as MANAGED_BY_LABEL
from lockyard.identity import MANAGED_BY_VALUE as MANAGED_BY_VALUE
from lockyard.identity import STORE_LABEL as STORE_LABEL
from lockyard.kube.leader_record import KIND_LABEL as KIND_LABEL
from lockyard.kube.names import store_label_value

#: Annotations: the exact names and the acquisition the Lease stands for.
LOCK_ANNOTATION = "lockyard.dev/lock"
STORE_ANNOTATION = "lockyard.dev/store"
FENCING_ANNOTATION = "lockyard.dev/fencing-token"
BACKEND_ANNOTATION = "lockyard.dev/backend"
OWNER_ANNOTATION = "lockyard.dev/owner"
LEASE_MS_ANNOTATION = "lockyard.dev/lease-ms"
HOLDER_POD_ANNOTATION = "lockyard.dev/holder-pod"

#: ``lockyard.dev/kind`` label values. Lock Leases carry no kind label (they predate it; a Lease
#: without one is a lock), elections carry ``election`` (``lockyard.kube.leader_record``).
LOCK_KIND = "lock"
SEMAPHORE_KIND = "semaphore"
RWLOCK_READ_KIND = "rwlock-read"
RWLOCK_WRITE_KIND = "rwlock-write"
#: The kinds of permit Leases, each with the permit space it lives in.
PERMIT_KINDS = {
    SEMAPHORE_KIND: "semaphore",
    RWLOCK_READ_KIND: "rwlock",
    RWLOCK_WRITE_KIND: "rwlock",
}
#: Annotation on a semaphore permit's Lease: the semaphore's limit.
LIMIT_ANNOTATION = "lockyard.dev/limit"

PREFIX = "lockyard-"
MAX_NAME_LENGTH = 63
HASH_LENGTH = 12
#: Characters the store part may take when the lock part needs room.
STORE_PART_SHARE = 20
#: How many characters of the owner token identify an acquisition in Leases and the CLI.
OWNER_PREFIX_LENGTH = 8

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def sanitize(text: str) -> str:
    """``text`` as lowercase ASCII alphanumerics joined by single dashes (may be empty).

    Accents are dropped first (``Ünïcode`` becomes ``unicode``), so names stay readable.
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_ALNUM.sub("-", ascii_text.lower()).strip("-")


def name_hash(store: str, lock: str, probe: int = 0) -> str:
    """The hash part of a Lease name: exact names in, 12 hex digits out."""
    material = f"{store}\x00{lock}" if probe == 0 else f"{store}\x00{lock}\x00{probe}"
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LENGTH]


def lease_name(store: str, lock: str, probe: int = 0) -> str:
    """The Lease name mirroring lock ``lock`` of store ``store`` (``probe`` > 0 after a collision).

    Always a valid DNS-1123 label of at most 63 characters.
    """
    if probe < 0:
        raise ValueError("probe must be >= 0")
    digest = name_hash(store, lock, probe)
    room = MAX_NAME_LENGTH - len(PREFIX) - len(digest) - 2  # two dashes around the lock part
    store_part = sanitize(store) or "store"
    lock_part = sanitize(lock) or "lock"
    store_part = store_part[: max(STORE_PART_SHARE, room - len(lock_part))].rstrip("-")
    lock_part = lock_part[: room - len(store_part)].rstrip("-") or "lock"
    if len(store_part) + len(lock_part) > room:  # only when the lock part fell back to "lock"
        store_part = store_part[: room - len(lock_part)].rstrip("-") or "s"
    return f"{PREFIX}{store_part}-{lock_part}-{digest}"


def permit_key(space: str, name: str, fencing_token: int) -> str:
    """What stands for one permit where a lock's name would (Lease names, the mirror's slots,
    the reaper's lookups). NUL never occurs in a lock name, so no lock has this key; it
    sanitizes to ``<space>-<name>-<token>`` in the Lease's name."""
    return f"{space}\x00{name}\x00{fencing_token}"


def is_dns_label(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _DNS_LABEL.match(name) is not None


def owner_prefix(owner: str) -> str:
    """The part of an owner token shown in Leases (the token itself stays in the process)."""
    return owner[:OWNER_PREFIX_LENGTH]


def store_selector(store: str | None = None) -> str:
    """The label selector of mirrored Leases (of one store when ``store`` is given)."""
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
    if store is not None:
        selector += f",{STORE_LABEL}={store_label(store)}"
    return selector


def store_label(store: str) -> str:
    """The ``lockyard.dev/store`` label value (the operator's rule, so selectors agree)."""
    return store_label_value(store)
