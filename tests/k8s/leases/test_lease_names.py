"""Lease names: readable, valid DNS-1123 labels, never shared by two locks (no cluster needed)."""

from __future__ import annotations

import itertools
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from lockyard.mirror.holder import Holder
from lockyard.mirror.lease_names import (
    HASH_LENGTH,
    MAX_NAME_LENGTH,
    is_dns_label,
    lease_name,
    name_hash,
    sanitize,
)

lock_names = st.text(min_size=1, max_size=512)
store_names = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?", fullmatch=True)


def test_names_are_readable() -> None:
    assert lease_name("orders", "invoice-17").startswith("lockyard-orders-invoice-17-")
    odd = lease_name("orders", "Invoice_17/Ünïcode")
    assert odd.startswith("lockyard-orders-invoice-17-unicode-")
    assert len(lease_name("orders", "invoice-17").rsplit("-", 1)[1]) == HASH_LENGTH


@settings(max_examples=300)
@given(store=store_names, lock=lock_names)
def test_every_name_is_a_valid_dns_label(store: str, lock: str) -> None:
    name = lease_name(store, lock)
    assert is_dns_label(name), name
    assert len(name) <= MAX_NAME_LENGTH
    for probe in (1, 2):
        assert is_dns_label(lease_name(store, lock, probe))


def test_names_that_sanitize_alike_stay_apart() -> None:
    # All of these sanitize to "a-b": only the hash of the exact names tells them apart.
    locks = ["a-b", "a_b", "A.B", "a b", "a--b", "a/b", "-a-b-", "\u00e0-b"]
    names = {lease_name("orders", lock) for lock in locks}
    assert len(names) == len(set(locks))
    assert {sanitize(lock) for lock in locks} == {"a-b"}


def test_long_names_with_a_common_start_stay_apart() -> None:
    base = "tenant-acme/invoices/2024/" + "x" * 100
    names = {lease_name("orders", f"{base}/{i}") for i in range(1000)}
    assert len(names) == 1000
    assert all(len(name) == MAX_NAME_LENGTH for name in names)


def test_store_is_part_of_the_identity() -> None:
    # Two stores in one namespace may lock the same name; so may stores whose names sanitize
    # alike ("a.b" and "a-b" are both valid StateStore names).
    assert lease_name("a.b", "x") != lease_name("a-b", "x")
    assert lease_name("orders", "x") != lease_name("payments", "x")


def test_probes_give_distinct_names() -> None:
    names = [lease_name("orders", "x", probe) for probe in range(10)]
    assert len(set(names)) == 10
    assert name_hash("orders", "x") != name_hash("orders", "x", 1)


def test_no_collisions_over_many_generated_names() -> None:
    alphabet = string.ascii_letters + string.digits + "-_./: "
    locks = ["".join(chars) for chars in itertools.product(alphabet, repeat=3)][:100_000]
    names = {lease_name("s", lock) for lock in locks}
    assert len(names) == len(locks)


def test_degenerate_names() -> None:
    for lock in ["-", "___", "\u2603", " ", "."]:
        name = lease_name("orders", lock)
        assert name.startswith("lockyard-orders-lock-")
        assert is_dns_label(name)
    long_store = "s" * 253
    assert is_dns_label(lease_name(long_store, "-"))
    assert is_dns_label(lease_name(long_store, "y" * 512))


def test_holder_from_the_downward_api() -> None:
    env = {"POD_NAME": "worker-7f9c", "POD_NAMESPACE": "shop", "POD_UID": "1234-abcd"}
    holder = Holder.detect(env)
    assert holder == Holder("worker-7f9c", "shop", "1234-abcd")
    assert holder.identity("0123456789abcdef") == "worker-7f9c_01234567"
    assert holder.pod() == "shop/worker-7f9c"
    assert holder.owner_reference("shop") == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "worker-7f9c",
        "uid": "1234-abcd",
    }
    # Owners must live in the dependent's namespace: a pod elsewhere owns nothing.
    assert holder.owner_reference("other") is None


def test_holder_outside_a_pod_is_the_host() -> None:
    holder = Holder.detect({})
    assert holder.name
    assert holder.uid is None
    assert holder.pod() == ""
    assert holder.owner_reference("default") is None
