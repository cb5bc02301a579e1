"""The DynamoDB backend as a whole: one aiobotocore client over one table, a store and a lock
manager on it; :func:`open_backend` builds one from a config."""

from __future__ import annotations

import contextlib
import functools
import random
import time
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.loaders import Loader, create_loader

from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.config import DynamoDBConfig
from lockyard.errors import ConfigError
from lockyard.guarantees import Guarantees
from lockyard.operations import OperationRunner

from .client import TableClient
from .errors import make_translate
from .fenced import DynamoDBFencedWrites
from .locks import DynamoDBLocks
from .permits import permit_managers
from .store import DynamoDBStateStore
from .table import TABLE_SETUP_TIMEOUT_S, prepare_table

GUARANTEES = Guarantees(
    mutual_exclusion=(
        "conditional writes on one item with strongly consistent reads; holds while client "
        "clocks agree to well within the lock TTL"
    ),
    failover_safety=(
        "writes are acknowledged once durable across Availability Zones: a lock survives node "
        "and zone failures (global tables are not supported: asynchronous replication)"
    ),
    fencing="per-name counter bumped in the acquiring write, kept after release, never reused",
    ttl_precision="1 ms (judged on read and in conditions; native TTL reclaims storage later)",
    clock="the client's wall clock: keep hosts in sync, skew well below the shortest lock TTL",
    fifo_waiters=False,
)


class DynamoDBBackend:
    """One aiobotocore client shared by the store and the locks; ``close()`` closes it."""

    name = "dynamodb"
    guarantees = GUARANTEES

    def __init__(
        self,
        config: DynamoDBConfig,
        client: Any,
        stack: contextlib.AsyncExitStack,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self.client = client
        self._stack = stack
        self._run = OperationRunner(self.name, config.operation_timeout, make_translate(config))
        self._table = TableClient(client, config, clock, random.random)
        self.store = DynamoDBStateStore(self._run, self._table)
        self.locks = DynamoDBLocks(self._run, self._table)
        self.semaphores, self.rwlocks = permit_managers(self._run, self._table)
        self.store.fenced_writes = DynamoDBFencedWrites(self._table, self.store)

    async def ping(self) -> float:
        """One GetItem of a key that never exists (needs only the data-plane permission)."""
        started = time.perf_counter()
        probe = self._table.pk("ping", "")
        await self._run("ping", self._table.call(self.client.get_item, Key=probe))
        return time.perf_counter() - started

    async def server_version(self) -> str:
        api = self.client.meta.service_model.api_version
        return f"DynamoDB API {api} at {self.client.meta.endpoint_url}, table {self.config.table}"

    async def close(self) -> None:
        self._run.close()
        await self._stack.aclose()


def client_config(config: DynamoDBConfig) -> AioConfig:
    """Pool size, timeouts tied to the operation timeout, botocore retries off (see throttling)."""
    return AioConfig(
        region_name=config.region,
        max_pool_connections=config.pool_size,
        connect_timeout=config.operation_timeout,
        read_timeout=config.operation_timeout,
        retries={"mode": "standard", "total_max_attempts": 1},
    )


@functools.cache
def _data_loader() -> Loader:
    """One botocore data loader per process: parsing botocore's JSON models is most of the cost
    of a new client (about 0.3 s), and the models never change while the process runs."""
    return create_loader()


def _session(config: DynamoDBConfig) -> aioboto3.Session:
    botocore_session = get_session()
    botocore_session.register_component("data_loader", _data_loader())
    return aioboto3.Session(
        botocore_session=botocore_session, region_name=config.region, **_credentials(config)
    )


def _credentials(config: DynamoDBConfig) -> dict[str, str]:
    key_id, secret = config.access_key_id, config.secret_access_key
    if key_id is None and secret is None:
        return {}
    if key_id is None or secret is None:
        raise ConfigError(
            "dynamodb: give both access_key_id and secret_access_key "
            "(dynamodb://KEY_ID:SECRET@TABLE), or neither to use the AWS credential chain"
        )
    return {"aws_access_key_id": key_id, "aws_secret_access_key": secret.get_secret_value()}


async def open_backend(config: DynamoDBConfig) -> DynamoDBBackend:
    """Open one client, check (or with ``create_table`` create) the table, return the backend."""
    session = _session(config)
    stack = contextlib.AsyncExitStack()
    try:
        try:
            client = await stack.enter_async_context(
                session.client(
                    "dynamodb", endpoint_url=config.endpoint_url, config=client_config(config)
                )
            )
        except ValueError as exc:
            # botocore's own checks (InvalidRegionError is a ValueError too) for anything the
            # config patterns let through: still the caller's settings, never a backend fault.
            raise ConfigError(
                f"dynamodb: botocore refused region {config.region!r} / endpoint_url "
                f"{config.endpoint_url!r}: {exc}"
            ) from None
        timeout = TABLE_SETUP_TIMEOUT_S if config.create_table else config.operation_timeout
        setup = OperationRunner("dynamodb", timeout, make_translate(config, opening=True))
        await setup("open", prepare_table(client, config))
    except BaseException:
        await stack.aclose()
        raise
    return DynamoDBBackend(config, client, stack)
