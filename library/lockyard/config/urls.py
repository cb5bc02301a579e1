"""Connection URLs to and from the backend config models.

| URL | model |
|---|---|
| ``memory://?prefix=P`` | :class:`MemoryConfig` |
| ``redis://[user:password@]host:port/db?prefix=P``, ``rediss://`` (TLS) | :class:`RedisConfig` |
| ``redis+sentinel://[user:password@]h1:p1,h2:p2/MASTER[/db]?prefix=P`` | Sentinel |
| ``redis+cluster://[user:password@]h1:p1,h2:p2/?prefix=P``, ``rediss+cluster://`` (TLS) | Cluster |
| ``postgresql://user:password@host:port/db?prefix=P&schema=S`` | :class:`PostgresConfig` |
| ``dynamodb://[key_id:secret@]TABLE?region=R&endpoint_url=URL&prefix=P`` | DynamoDB |

Query parameters map onto model fields (``schema`` -> ``schema_name``; ``tls_ca_file`` etc. onto
the nested TLS settings); an unknown parameter is a ``ConfigError`` naming it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from pydantic import TypeAdapter, ValidationError

from lockyard.config.backends import (
    PATTERN_MEANINGS,
    BackendConfig,
    DynamoDBConfig,
    MemoryConfig,
    PostgresConfig,
    RedisClusterConfig,
    RedisConfig,
    RedisSentinelConfig,
)
from lockyard.errors import ConfigError

_ADAPTER: TypeAdapter[BackendConfig] = TypeAdapter(BackendConfig)

_SCHEMES = {
    "memory": "memory",
    "redis": "redis",
    "rediss": "redis",
    "redis+sentinel": "redis-sentinel",
    "rediss+sentinel": "redis-sentinel",
    "redis+cluster": "redis-cluster",
    "rediss+cluster": "redis-cluster",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "dynamodb": "dynamodb",
}
_PARAM_ALIASES = {"schema": "schema_name", "ssl_mode": "sslmode", "timeout": "operation_timeout"}
_TLS_PARAMS = {"tls_ca_file": "ca_file", "tls_cert_file": "cert_file", "tls_key_file": "key_file"}
_TLS_PARAMS |= {"tls_verify": "verify", "ssl_ca_certs": "ca_file"}


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs, errors and status)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def validate_config(data: dict[str, Any]) -> BackendConfig:
    """Validate a mapping into a config model, raising ``ConfigError`` that names each field."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "(root)"
        meaning = PATTERN_MEANINGS.get(str((error.get("ctx") or {}).get("pattern")))
        problems.append(f"{where}: must be {meaning}" if meaning else f"{where}: {error['msg']}")
    return "invalid settings: " + "; ".join(problems)


def _bool(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"URL parameter {name}={text!r} must be true or false")


def _query(query: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    tls: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _TLS_PARAMS:
            field = _TLS_PARAMS[name]
            tls[field] = _bool(name, value) if field == "verify" else value
            continue
        field = _PARAM_ALIASES.get(name, name)
        if field in {"migrate", "create_table"}:
            params[field] = _bool(name, value)
        else:
            params[field] = value
    if tls:
        params["tls"] = tls
    return params


def parse_url(url: str) -> BackendConfig:
    """Parse a connection URL into its config model; ``ConfigError`` says what is wrong."""
    if not isinstance(url, str):
        raise ConfigError(f"a connection URL must be a str, got {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"connection URL {redact(url)!r} has no scheme (like redis://)")
    backend = _SCHEMES.get(scheme.lower())
    if backend is None:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise ConfigError(f"unknown URL scheme {scheme + '://'!r}; known: {known}")
    location, _, query = rest.partition("?")
    netloc, _, path = location.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    user = password = None
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = unquote(raw_user) or None
        password = unquote(raw_password) if colon else None
    data: dict[str, Any] = {"backend": backend, **_query(query)}
    known_fields = _known_fields(backend)
    unknown = sorted(set(data) - known_fields)
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)} in a {scheme}:// URL; "
            f"known: {', '.join(sorted(known_fields - {'backend'}))}"
        )
    if backend in {"redis", "redis-sentinel", "redis-cluster"}:
        _redis_location(data, scheme, hostlist, path)
        data["username"], data["password"] = user, password
    elif backend == "postgresql":
        host, port = _host_port(hostlist, 5432, scheme)
        data.update(host=host or "localhost", port=port)
        if path:
            data["database"] = unquote(path)
        if user:
            data["user"] = user
        data["password"] = password
    elif backend == "dynamodb":
        data["table"] = unquote(hostlist)
        if user:
            data["access_key_id"], data["secret_access_key"] = user, password
    return validate_config(data)


def _known_fields(backend: str) -> set[str]:
    model = {
        "memory": MemoryConfig,
        "redis": RedisConfig,
        "redis-sentinel": RedisSentinelConfig,
        "redis-cluster": RedisClusterConfig,
        "postgresql": PostgresConfig,
        "dynamodb": DynamoDBConfig,
    }[backend]
    return set(model.model_fields)  # type: ignore[attr-defined]


def _host_port(hostport: str, default_port: int, scheme: str) -> tuple[str, int]:
    if hostport.startswith("["):
        host, _, port_text = hostport[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
    if not port_text:
        return host, default_port
    if not port_text.isdigit():
        raise ConfigError(f"port {port_text!r} in a {scheme}:// URL must be a number")
    return host, int(port_text)


def _redis_location(data: dict[str, Any], scheme: str, hosts: str, path: str) -> None:
    if scheme.lower().startswith("rediss"):
        data["tls"] = {**data.get("tls", {}), "enabled": True}
    segments = [s for s in path.split("/") if s]
    if data["backend"] == "redis-cluster":
        data["nodes"] = [
            dict(zip(("host", "port"), _host_port(h, 6379, scheme), strict=True))
            for h in hosts.split(",")
            if h
        ]
        if segments:
            raise ConfigError(
                f"a {scheme}:// URL has no database or other path (Redis Cluster has one "
                f"database): {scheme}://h1:p1,h2:p2/?prefix=P"
            )
        return
    if data["backend"] == "redis":
        host, port = _host_port(hosts, 6379, scheme)
        data.update(host=host or "localhost", port=port)
        db_text = segments[0] if segments else "0"
    else:
        data["sentinels"] = [
            dict(zip(("host", "port"), _host_port(h, 26379, scheme), strict=True))
            for h in hosts.split(",")
            if h
        ]
        if not segments:
            raise ConfigError(f"a {scheme}:// URL needs the master name: {scheme}://hosts/MASTER")
        data["master"] = unquote(segments[0])
        db_text = segments[1] if len(segments) > 1 else "0"
    if not db_text.isdigit():
        raise ConfigError(f"database {db_text!r} in a {scheme}:// URL must be a number")
    data["db"] = int(db_text)


def to_url(config: BackendConfig, *, with_password: bool = True) -> str:
    """The URL that ``parse_url`` turns back into ``config`` (credentials included if asked)."""
    query: dict[str, str] = {"prefix": config.prefix}
    if config.operation_timeout != 5.0:
        query["timeout"] = f"{config.operation_timeout:g}"
    if isinstance(config, MemoryConfig):
        return f"memory://?{urlencode(query)}"
    if isinstance(config, RedisConfig | RedisSentinelConfig | RedisClusterConfig):
        return _redis_url(config, query, with_password)
    if isinstance(config, PostgresConfig):
        auth = _auth(config.user, config.password, with_password)
        query |= {"schema": config.schema_name, "sslmode": config.sslmode}
        for name in ("sslrootcert", "sslcert", "sslkey"):
            if getattr(config, name):
                query[name] = getattr(config, name)
        if not config.migrate:
            query["migrate"] = "false"
        if config.pool_size != 10:
            query["pool_size"] = str(config.pool_size)
        host = f"[{config.host}]" if ":" in config.host else config.host
        return (
            f"postgresql://{auth}{host}:{config.port}/{quote(config.database)}?{urlencode(query)}"
        )
    auth = _auth(config.access_key_id, config.secret_access_key, with_password)
    query["region"] = config.region
    if config.endpoint_url:
        query["endpoint_url"] = config.endpoint_url
    if config.create_table:
        query["create_table"] = "true"
    return f"dynamodb://{auth}{config.table}?{urlencode(query)}"


def _auth(user: str | None, password: Any, with_password: bool) -> str:
    if not user and password is None:
        return ""
    text = quote(user or "", safe="")
    if password is not None:
        secret = password.get_secret_value() if with_password else "***"
        text += ":" + (quote(secret, safe="") if with_password else secret)
    return text + "@"


def _redis_url(
    config: RedisConfig | RedisSentinelConfig | RedisClusterConfig,
    query: dict[str, str],
    with_password: bool,
) -> str:
    tls = config.tls
    for name, field in (("tls_ca_file", "ca_file"), ("tls_cert_file", "cert_file")):
        if getattr(tls, field):
            query[name] = getattr(tls, field)
    if tls.key_file:
        query["tls_key_file"] = tls.key_file
    if not tls.verify:
        query["tls_verify"] = "false"
    if config.pool_size != 16:
        query["pool_size"] = str(config.pool_size)
    if config.wait_replicas:
        query["wait_replicas"] = str(config.wait_replicas)
    auth = _auth(config.username, config.password, with_password)
    if isinstance(config, RedisConfig):
        scheme = "rediss" if tls.enabled else "redis"
        return f"{scheme}://{auth}{config.host}:{config.port}/{config.db}?{urlencode(query)}"
    if isinstance(config, RedisClusterConfig):
        scheme = "rediss+cluster" if tls.enabled else "redis+cluster"
        hosts = ",".join(_host_text(n.host, n.port) for n in config.nodes)
        return f"{scheme}://{auth}{hosts}/?{urlencode(query)}"
    scheme = "rediss+sentinel" if tls.enabled else "redis+sentinel"
    hosts = ",".join(f"{s.host}:{s.port}" for s in config.sentinels)
    if config.sentinel_username:
        query["sentinel_username"] = config.sentinel_username
    if config.sentinel_password is not None and with_password:
        query["sentinel_password"] = config.sentinel_password.get_secret_value()
    path = f"{quote(config.master, safe='')}/{config.db}"
    return f"{scheme}://{auth}{hosts}/{path}?{urlencode(query)}"


def _host_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
