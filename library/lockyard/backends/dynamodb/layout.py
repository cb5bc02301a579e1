"""The DynamoDB table of the ``dynamodb`` backend: its definition and every expression it runs.

The layout itself (which item holds what, and why) is described in
docs/backends/dynamodb.md; this module holds the data that implements it, so the table
definition and the expressions can be read side by side. ``P`` below is the store's prefix
(``[A-Za-z0-9][A-Za-z0-9._-]*``, so it never contains ``#`` and ``P#`` fences a store off).

Attribute names are short and none is a DynamoDB reserved word, so no expression needs
``ExpressionAttributeNames``. Every expression names exactly the ``:placeholders`` listed in its
header comment: DynamoDB rejects a request that passes an unused value.
"""

from __future__ import annotations

from typing import Any, Final

# -- attributes --------------------------------------------------------------------------------
PK: Final = "pk"  # S, table hash key: "P#d#<key>", "P#l#<lock name>", "P#t#<key>", "P#c#<key>"
KIND_PART: Final = "kp"  # S, by_kind hash key: "P#d#<kind>" (data) or "P#l" (held locks only)
SORT_KEY: Final = "k"  # S, by_kind range key: the canonical key, or the lock name
VALUE: Final = "v"  # S, a value that is not a counter (not the canonical decimal of an int64)
NUMBER: Final = "n"  # N, a value that is a counter, as its number
VERSION: Final = "ver"  # N, 1 on create, +1 per mutation
EXPIRES_MS: Final = "exp_ms"  # N, absolute deadline in epoch milliseconds (client clock)
TTL_ATTRIBUTE: Final = "expires_at"  # N, the same deadline in epoch seconds, for native TTL
OWNER: Final = "own"  # S, the holder's owner token (locks; absent when free)
DEADLINE: Final = "dl"  # N, the lease end in epoch milliseconds (locks; absent when free)
FENCING: Final = "fence"  # N, the last fencing token handed out (locks; never removed)
INDEX_PART: Final = "ip"  # S, by_time hash key: "P#t" (timeout index) or "P#c" (chain index)
INDEX_AT: Final = "ts"  # N, by_time range key: the indexed millisecond timestamp

BY_KIND: Final = "by_kind"
BY_TIME: Final = "by_time"

#: Tags after ``P#`` that separate the key spaces of one store.
DATA_TAG: Final = "d"
LOCK_TAG: Final = "l"
INDEX_TAGS: Final = {"timeout": "t", "chain": "c"}

#: What ``by_kind`` carries besides its keys: enough to answer scans and ``list_held`` without
#: going back to the table (values may be large, but only scans read them from the index).
BY_KIND_PROJECTION: Final = [VALUE, NUMBER, EXPIRES_MS, OWNER, DEADLINE, FENCING]


def table_definition(table: str) -> dict[str, Any]:
    """``CreateTable`` parameters: on-demand billing, one hash key, two sparse GSIs."""
    return {
        "TableName": table,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": PK, "AttributeType": "S"},
            {"AttributeName": KIND_PART, "AttributeType": "S"},
            {"AttributeName": SORT_KEY, "AttributeType": "S"},
            {"AttributeName": INDEX_PART, "AttributeType": "S"},
            {"AttributeName": INDEX_AT, "AttributeType": "N"},
        ],
        "KeySchema": [{"AttributeName": PK, "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": BY_KIND,
                "KeySchema": [
                    {"AttributeName": KIND_PART, "KeyType": "HASH"},
                    {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(BY_KIND_PROJECTION),
                },
            },
            {
                "IndexName": BY_TIME,
                "KeySchema": [
                    {"AttributeName": INDEX_PART, "KeyType": "HASH"},
                    {"AttributeName": INDEX_AT, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    }


#: (index name, hash attribute, range attribute) that an existing table must have.
REQUIRED_INDEXES: Final = ((BY_KIND, KIND_PART, SORT_KEY), (BY_TIME, INDEX_PART, INDEX_AT))

# -- conditions on data items ------------------------------------------------------------------
# A data item is live when it exists and has no deadline or a deadline after :now (the client's
# epoch milliseconds). Expired items stay in the table until native TTL deletes them (hours to
# days later), so every condition treats "expired" exactly like "missing".

#: check_and_set, and the replace-an-expired-item fallback of set/increment.
#: Values: :now. True when the item is missing or expired.
ABSENT_OR_EXPIRED: Final = "attribute_not_exists(pk) OR exp_ms <= :now"

#: set (first attempt). Values: :now. True when the item is missing or live, so the version can
#: continue with if_not_exists(ver, 0) + 1; false only for an expired item (the version must
#: restart at 1, which one UpdateItem cannot decide).
MISSING_OR_LIVE: Final = "attribute_not_exists(exp_ms) OR exp_ms > :now"

#: compare_and_swap. Values: :expected, :now. A missing item has no ver, so it never matches.
VERSION_MATCHES_AND_LIVE: Final = (
    "ver = :expected AND (attribute_not_exists(exp_ms) OR exp_ms > :now)"
)

_INCREMENTABLE = (
    "attribute_not_exists(pk) OR "
    "(attribute_exists(n) AND attribute_not_exists(v) "
    "AND (attribute_not_exists(exp_ms) OR exp_ms > :now){bound})"
)
#: increment (first attempt), by the sign of the delta. Values: :now, and :limit unless the delta
#: is 0. True when the item is missing, or live with its value as ``n`` alone (a counter: ``n``
#: is only written for canonical int64 decimals; a ``v`` beside it, left by versions that also
#: kept other spellings such as " 7" there, means the value is not a counter) and the sum stays
#: within int64: n <= INT64_MAX - delta (delta > 0), n >= INT64_MIN - delta (delta < 0). False
#: for an expired item, a value that is not a counter and an overflow; ALL_OLD on failure tells
#: which, and for a live item it is always an error, never a retry.
INCREMENTABLE: Final = {
    1: _INCREMENTABLE.format(bound=" AND n <= :limit"),
    -1: _INCREMENTABLE.format(bound=" AND n >= :limit"),
    0: _INCREMENTABLE.format(bound=""),
}

# -- updates on data items ---------------------------------------------------------------------
_TTL_SET = ", exp_ms = :exp, expires_at = :expires_at"
_COMMON_SET = "ver = if_not_exists(ver, :zero) + :one, kp = :kp, k = :k"


def _set_update(form: str, with_ttl: bool) -> str:
    values = {"v": "v = :v", "n": "n = :n"}[form]
    removed = {"v": ["n"], "n": ["v"]}[form]
    if not with_ttl:
        removed += [EXPIRES_MS, TTL_ATTRIBUTE]
    remove = f" REMOVE {', '.join(removed)}" if removed else ""
    return f"SET {values}, {_COMMON_SET}{_TTL_SET if with_ttl else ''}{remove}"


#: set (first attempt), keyed by (value form, has a ttl). The form says which value attribute the
#: new value uses: "n" for a counter (the canonical decimal of an int64), "v" (a string) for
#: anything else, " 7" and "007" included; the other one is removed, so an item never carries a
#: stale form. Without a ttl the deadline attributes are removed.
#: Values: :v or :n, :zero, :one, :kp, :k, and :exp, :expires_at with a ttl.
SET_UPDATES: Final = {
    (form, with_ttl): _set_update(form, with_ttl)
    for form in ("v", "n")
    for with_ttl in (False, True)
}

#: increment (first attempt), keyed by has a ttl. A missing item starts from 0 and version 1;
#: INCREMENTABLE admits no item with a v, so n alone holds the result. Without a ttl an existing
#: deadline is kept. Values: :zero, :one, :d, :kp, :k, and :exp, :expires_at with a ttl.
#: ReturnValues=ALL_NEW returns n (the new value).
INCREMENT_UPDATES: Final = {
    with_ttl: f"SET n = if_not_exists(n, :zero) + :d, {_COMMON_SET}{_TTL_SET if with_ttl else ''}"
    for with_ttl in (False, True)
}

# -- locks -------------------------------------------------------------------------------------
#: try_acquire. Values: :now. True when nobody holds the lock or the holder's lease has ended.
LOCK_FREE: Final = "attribute_not_exists(own) OR dl <= :now"

#: try_acquire. Values: :own, :dl (now + ttl), :zero, :one, :lock_kp, :name. Bumps the fencing
#: counter in the same write; ReturnValues=UPDATED_NEW returns fence (the new token). kp puts the
#: held lock into by_kind for list_held.
ACQUIRE: Final = (
    "SET own = :own, dl = :dl, fence = if_not_exists(fence, :zero) + :one, kp = :lock_kp, k = :name"
)

#: extend and release. Values: :own, :now. True when this owner holds a live lease.
HELD_BY: Final = "own = :own AND dl > :now"

#: break_lock. Values: :now. True when anyone holds a live lease.
HELD_BY_ANYONE: Final = "attribute_exists(own) AND dl > :now"

#: extend. Values: :dl (now + ttl): a reset of the lease, not an addition.
EXTEND: Final = "SET dl = :dl"

#: release and break_lock. No values. Keeps fence (tokens are never reused) and leaves by_kind.
RELEASE: Final = "REMOVE own, dl, kp"

# -- queries -----------------------------------------------------------------------------------
#: scan_keys on by_kind. Values: :kp ("P#d#<kind>"), :prefix (the literal key prefix).
#: begins_with compares bytes: no wildcard exists in it.
KEYS_WITH_PREFIX: Final = "kp = :kp AND begins_with(k, :prefix)"

#: scan_keys_by_kind and list_held on by_kind. Values: :kp.
KEYS_OF_PART: Final = "kp = :kp"

#: Filter of both scans. Values: :now. Hides expired items (native TTL deletes them much later).
LIVE_FILTER: Final = "attribute_not_exists(exp_ms) OR exp_ms > :now"

#: Filter of list_held. Values: :now. Hides leases that ended without a release.
HELD_FILTER: Final = "dl > :now"

#: get_expired_timeouts / get_ready_chains on by_time. Values: :ip ("P#t" or "P#c"), :now.
DUE: Final = "ip = :ip AND ts <= :now"

#: purge (a consistent table Scan; administrative only). Values: :store ("P#").
OF_STORE: Final = "begins_with(pk, :store)"

# -- projections -------------------------------------------------------------------------------
DATA_FIELDS: Final = "v, n, ver, exp_ms"
SCAN_FIELDS: Final = "k, v, n"
LOCK_FIELDS: Final = "own, dl"
HELD_FIELDS: Final = "k, own, dl, fence"
