"""The router's settings, typed and validated once when the file is loaded; errors name the field.

A YAML or JSON file (`shoal router --config FILE`; `router/examples/local.yaml` is the local one):
where to listen, the admin API's bearer token (`admin.token_file`, required unless the admin API
listens on a loopback address only), the pools (model name and the QoS classes of it each takes,
revisions and their runtime endpoints, the stable/canary split, rollback rules, QoS, per-pool tenant
limits, which requests may speculate, how requests wait while the pool has no ready runtime), the
tenants and their limits, and the API-key file that maps keys to tenants (a separate file, so a
Kubernetes Secret can hold it). Two pools may serve one model, each taking its own QoS classes
(traffic/model_pools.py).
`pools` may be empty: the operator then pushes each pool's route through the admin API. A `pools[]`
entry and a pushed route are the same Route (shoal/route_contract.py), read by the same `parse_route`.
"""

import hashlib
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from shoal.constants import ROUTER_ADMIN_PORT, ROUTER_GRPC_PORT, ROUTER_HTTP_PORT
from shoal.fields import FieldError, Fields
from shoal.route_contract import (
    QOS_CLASSES,
    Route,
    TenantLimit,
    parse_route,
    read_tenant_limit,
    route_from_json,
    unique,
)
from shoal.router.traffic.model_pools import clash


class ConfigError(FieldError):
    """A config value is missing or wrong; the message starts with the field's path."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int  # 0: any free port


@dataclass(frozen=True)
class TenantConfig(TenantLimit):
    """A tenant of the router: its limits across every pool, its token burst and default QoS class."""

    token_burst: int | None = None  # bucket size; default one minute's worth
    default_qos: str = "realtime"


@dataclass(frozen=True)
class RealtimeConfig:
    idle_timeout_s: float = 300.0  # no client event and no response in progress
    max_lifetime_s: float = 3600.0
    max_message_bytes: int = 1 << 20
    max_conversation_chars: int = 1_000_000  # what one session may accumulate (far past any context window)
    send_buffer_bytes: int = 64 << 10  # past this, the session stops pulling tokens until the client reads
    heartbeat_s: float = 10.0  # ping a client silent this long; gone without a pong within half of it
    send_timeout_s: float = 10.0  # a send blocked this long: the client stopped reading, it is gone


@dataclass(frozen=True)
class RouterConfig:
    pools: tuple[Route, ...]
    tenants: tuple[TenantConfig, ...] = ()
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)  # sha256(key) -> tenant
    anonymous_tenant: str | None = None  # requests without a key; None: they get 401
    listen: Listen = Listen("127.0.0.1", ROUTER_HTTP_PORT)
    grpc: Listen | None = Listen("127.0.0.1", ROUTER_GRPC_PORT)
    admin: Listen = Listen("127.0.0.1", ROUTER_ADMIN_PORT)
    admin_token: str | None = field(default=None, repr=False)
    max_body_bytes: int = 1 << 20
    scrape_interval_s: float = 2.0
    health_interval_s: float = 1.0  # how often each runtime's gRPC Health is probed (its readiness)
    control_interval_s: float = 0.5  # how often rollback rules and the batch share are evaluated
    # An HTTP connection (public or admin port) with no request in progress is closed after this long:
    # idle between requests, or a request line and headers that never finish (slowloris).
    client_idle_timeout_s: float = 60.0
    client_body_timeout_s: float = 60.0  # to read a request's body, once its headers are in: 408 after it
    realtime: RealtimeConfig = RealtimeConfig()


def hash_api_key(key: str) -> str:
    """Keys are held and compared only as hashes, so no key sits in memory dumps or logs."""
    return hashlib.sha256(key.encode()).hexdigest()


def load_config(path: str | Path) -> RouterConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: {error}") from None
    return parse_config(data or {}, base_dir=path.parent)


def parse_config(data: dict, base_dir: Path = Path(".")) -> RouterConfig:
    f = Fields(data, "", ConfigError)
    f.get("pools", list)  # required, but may be empty (the operator pushes the pools)
    pools = tuple(parse_route(p) for p in f.items("pools"))
    unique(f, "pools", [p.name for p in pools], "name")
    for index, pool in enumerate(pools):
        reason = clash(pool, pools[:index])
        if reason is not None:
            raise ConfigError(f"pools[{index}]: {reason}")
    tenants = tuple(_tenant(t) for t in f.items("tenants"))
    unique(f, "tenants", [t.name for t in tenants], "name")
    names = sorted(t.name for t in tenants)
    for index, pool in enumerate(pools):  # one file holds both lists, so a name in one only is a mistake
        for limit, tenant in enumerate(pool.tenants):
            if tenant.name not in names:
                raise ConfigError(
                    f"pools[{index}].tenants[{limit}].name: no tenant {tenant.name!r} under tenants (have {names})"
                )
        for off, tenant in enumerate(pool.speculative.tenants_off):
            if tenant not in names:
                raise ConfigError(
                    f"pools[{index}].speculative.tenants_off[{off}]: no tenant {tenant!r} under tenants (have {names})"
                )
    auth = f.sub("auth")
    keys_file = auth.get("api_keys_file", str, None)
    anonymous = auth.get("anonymous_tenant", str, None)
    auth.done()
    admin = f.sub("admin")
    token_file = admin.get("token_file", str, None)
    d = RouterConfig
    config = RouterConfig(
        pools=pools,
        tenants=tenants,
        api_keys=_api_keys(base_dir / keys_file, "auth.api_keys_file") if keys_file else {},
        anonymous_tenant=anonymous,
        listen=_listen(f.sub("listen"), d.listen),
        grpc=_grpc_listen(f.sub("grpc")),
        admin=_listen(admin, d.admin),
        admin_token=_read_secret(base_dir / token_file, "admin.token_file") if token_file else None,
        max_body_bytes=f.get("max_body_bytes", int, d.max_body_bytes, minimum=1024),
        scrape_interval_s=f.get("scrape_interval_s", float, d.scrape_interval_s, minimum=0.05),
        health_interval_s=f.get("health_interval_s", float, d.health_interval_s, minimum=0.05),
        client_idle_timeout_s=f.get("client_idle_timeout_s", float, d.client_idle_timeout_s, minimum=0.1),
        client_body_timeout_s=f.get("client_body_timeout_s", float, d.client_body_timeout_s, minimum=0.1),
        control_interval_s=f.get("control_interval_s", float, d.control_interval_s, minimum=0.01),
        realtime=_realtime(f.sub("realtime")),
    )
    f.done()
    if config.admin_token is None and not is_loopback(config.admin.host):
        raise ConfigError(
            f"admin.token_file: required when admin.host is {config.admin.host!r}, not a loopback address: "
            "without a token, anyone who reaches that port can change routes"
        )
    known = {t.name for t in tenants}
    for tenant in set(config.api_keys.values()) | ({anonymous} if anonymous else set()):
        if tenant not in known:
            raise ConfigError(
                f"auth: tenant {tenant!r} has keys but is not listed under tenants (have {sorted(known)})"
            )
    return config


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (a name other than localhost might resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_pool(data: dict) -> Route:
    """One pool entry on its own (an admin API route); errors name the field from the entry's top."""
    return route_from_json(data, ConfigError)


def _tenant(f: Fields) -> TenantConfig:
    d = TenantConfig
    tenant = TenantConfig(
        **vars(read_tenant_limit(f)),
        token_burst=f.get("token_burst", int, d.token_burst, minimum=1),
        default_qos=f.get("default_qos", str, d.default_qos, choices=QOS_CLASSES),
    )
    f.done()
    return tenant


def _realtime(f: Fields) -> RealtimeConfig:
    d = RealtimeConfig
    realtime = RealtimeConfig(
        idle_timeout_s=f.get("idle_timeout_s", float, d.idle_timeout_s, minimum=0.1),
        max_lifetime_s=f.get("max_lifetime_s", float, d.max_lifetime_s, minimum=0.1),
        max_message_bytes=f.get("max_message_bytes", int, d.max_message_bytes, minimum=1024),
        max_conversation_chars=f.get("max_conversation_chars", int, d.max_conversation_chars, minimum=1),
        send_buffer_bytes=f.get("send_buffer_bytes", int, d.send_buffer_bytes, minimum=1024),
        heartbeat_s=f.get("heartbeat_s", float, d.heartbeat_s, minimum=0.1),
        send_timeout_s=f.get("send_timeout_s", float, d.send_timeout_s, minimum=0.1),
    )
    f.done()
    return realtime


def _listen(f: Fields, default: Listen) -> Listen:
    listen = Listen(f.get("host", str, default.host), f.get("port", int, default.port, minimum=0, maximum=65535))
    f.done()
    return listen


def _grpc_listen(f: Fields) -> Listen | None:
    """The public gRPC API's address; `enabled: false` turns it off."""
    enabled = f.get("enabled", bool, True)
    listen = _listen(f, RouterConfig.grpc)
    return listen if enabled else None


def _api_keys(path: Path, field_name: str) -> dict[str, str]:
    """The key file: `keys: [{key: sk-..., tenant: acme}, ...]`. Returns sha256(key) -> tenant."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{field_name}: {error}") from None
    f = Fields(data, str(path), ConfigError)
    keys: dict[str, str] = {}
    for entry in f.items("keys", required=True):
        digest = hash_api_key(entry.get("key", str))
        if digest in keys:
            raise ConfigError(f"{entry.path}.key: the same key is listed twice")
        keys[digest] = entry.get("tenant", str)
        entry.done()
    f.done()
    return keys


def _read_secret(path: Path, field_name: str) -> str:
    try:
        secret = path.read_text().strip()
    except OSError as error:
        raise ConfigError(f"{field_name}: {error}") from None
    if not secret:
        raise ConfigError(f"{field_name}: {path} is empty")
    return secret
