"""The router's settings, typed and validated once when the file is loaded; errors name the field.

A YAML or JSON file (`shoal router --config FILE`; `router/examples/local.yaml` is the local one):
where to listen, the pools (model name, revisions and their runtime endpoints, the stable/canary
split, rollback rules, QoS, per-pool tenant limits), the tenants and their limits, and the API-key
file that maps keys to tenants (a separate file, so a Kubernetes Secret can hold it). `pools` may be
empty: the operator then pushes each pool's route through the admin API, whose body is one `pools[]`
entry read by `parse_pool`, the same reader.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

QOS_CLASSES = ("realtime", "batch")
LATENCY_METRICS = ("ttft", "itl", "e2e")
_REQUIRED = object()


class ConfigError(ValueError):
    """A config value is missing or wrong; the message starts with the field's path."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int  # 0: any free port


@dataclass(frozen=True)
class EndpointConfig:
    target: str  # host:port of the runtime's gRPC server
    metrics_url: str | None = None  # its Prometheus /metrics; None: not scraped


@dataclass(frozen=True)
class LatencyRatioRule:
    """Canary's latency quantile above max_ratio x stable's (and at least min_difference_s more)."""

    metric: str = "e2e"
    quantile: float = 0.99
    max_ratio: float = 1.3
    min_difference_s: float = 0.0
    min_samples: int = 50
    window_s: float = 60.0

    @property
    def name(self) -> str:
        return f"latency_ratio:{self.metric}_p{self.quantile * 100:g}"


@dataclass(frozen=True)
class ErrorRateRule:
    """Canary's error rate above max_rate, or above stable's + max_over_stable (whichever is set)."""

    max_rate: float | None = 0.01
    max_over_stable: float | None = None
    min_samples: int = 50
    window_s: float = 60.0

    @property
    def name(self) -> str:
        return "error_rate"


@dataclass(frozen=True)
class PreemptionRule:
    """More than max_count preemptions (the runtime ran out of KV memory) on the canary's runtimes."""

    max_count: int = 0
    window_s: float = 60.0

    @property
    def name(self) -> str:
        return "preemptions"


@dataclass(frozen=True)
class KvFreeRule:
    """The canary's KV free fraction (its fullest runtime), averaged over the window's scrapes, below min_free."""

    min_free: float = 0.10
    min_samples: int = 3
    window_s: float = 30.0

    @property
    def name(self) -> str:
        return "kv_free"


RollbackRule = LatencyRatioRule | ErrorRateRule | PreemptionRule | KvFreeRule
RULE_KINDS: dict[str, type] = {
    "latency_ratio": LatencyRatioRule,
    "error_rate": ErrorRateRule,
    "preemptions": PreemptionRule,
    "kv_free": KvFreeRule,
}
DEFAULT_RULES: tuple = (LatencyRatioRule(), ErrorRateRule(), PreemptionRule(), KvFreeRule())


@dataclass(frozen=True)
class QosConfig:
    max_concurrency_per_endpoint: int = 16  # requests the router keeps in flight to one runtime
    realtime_queue: int = 64  # realtime requests waiting at the router before it sheds them
    batch_queue: int = 256
    max_queue_wait_s: float = 30.0
    batch_share_min: float = 0.1  # of the pool's concurrency, whatever realtime latency does
    batch_share_max: float = 0.5
    realtime_ttft_target_s: float = 1.0  # batch's share shrinks as realtime p95 TTFT nears this
    batch_priority: int = 1  # the runtime priority of batch requests (realtime: 0)


@dataclass(frozen=True)
class PrefixAffinity:
    enabled: bool = False
    prefix_chars: int = 512  # how much of the prompt picks the replica
    max_load_factor: float = 1.5  # leave the preferred replica above this x the average load


@dataclass(frozen=True)
class TenantConfig:
    name: str
    max_concurrent: int | None = None  # None: unlimited
    tokens_per_minute: int | None = None  # prompt + completion tokens; None: unlimited
    token_burst: int | None = None  # bucket size; default one minute's worth
    default_qos: str = "realtime"


@dataclass(frozen=True)
class PoolConfig:
    name: str
    model: str  # what clients send as `model`
    stable: str  # revision names
    canary: str | None = None
    canary_weight: float = 0.0  # percent of requests to the canary
    sticky: bool = True  # a session key (header or `user`) keeps a client on one revision
    revisions: dict[str, tuple[EndpointConfig, ...]] = field(default_factory=dict)  # static endpoints
    rollback_rules: tuple = DEFAULT_RULES
    qos: QosConfig = QosConfig()
    prefix_affinity: PrefixAffinity = PrefixAffinity()
    tenants: tuple[TenantConfig, ...] = ()  # limits on this pool, on top of the router-wide ones

    @property
    def longest_window_s(self) -> float:
        """How far back its rollback rules look: the measurements must be kept at least this long."""
        return max((rule.window_s for rule in self.rollback_rules), default=0.0)


@dataclass(frozen=True)
class RealtimeConfig:
    idle_timeout_s: float = 300.0  # no client event and no response in progress
    max_lifetime_s: float = 3600.0
    max_message_bytes: int = 1 << 20
    max_conversation_chars: int = 1_000_000  # what one session may accumulate (far past any context window)
    send_buffer_bytes: int = 64 << 10  # past this, the session stops pulling tokens until the client reads


@dataclass(frozen=True)
class RouterConfig:
    pools: tuple[PoolConfig, ...]
    tenants: tuple[TenantConfig, ...] = ()
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)  # sha256(key) -> tenant
    anonymous_tenant: str | None = None  # requests without a key; None: they get 401
    listen: Listen = Listen("127.0.0.1", 8000)
    grpc: Listen | None = Listen("127.0.0.1", 50052)
    admin: Listen = Listen("127.0.0.1", 8002)
    admin_token: str | None = field(default=None, repr=False)
    max_body_bytes: int = 1 << 20
    scrape_interval_s: float = 2.0
    control_interval_s: float = 0.5  # how often rollback rules and the batch share are evaluated
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
    f = _Fields(data, "")
    f.get("pools", list)  # required, but may be empty (the operator pushes the pools)
    pools = tuple(_pool(p) for p in f.items("pools"))
    _unique("pools", [p.name for p in pools], "name")
    _unique("pools", [p.model for p in pools], "model")
    tenants = tuple(_tenant(t) for t in f.items("tenants"))
    _unique("tenants", [t.name for t in tenants], "name")
    names = sorted(t.name for t in tenants)
    for index, pool in enumerate(pools):  # one file holds both lists, so a name in one only is a mistake
        for limit, tenant in enumerate(pool.tenants):
            if tenant.name not in names:
                raise ConfigError(f"pools[{index}].tenants[{limit}].name: no tenant {tenant.name!r} under tenants (have {names})")
    auth = f.sub("auth")
    keys_file = auth.get("api_keys_file", str, None)
    anonymous = auth.get("anonymous_tenant", str, None)
    auth.done()
    admin = f.sub("admin")
    token_file = admin.get("token_file", str, None)
    config = RouterConfig(
        pools=pools,
        tenants=tenants,
        api_keys=_api_keys(base_dir / keys_file, "auth.api_keys_file") if keys_file else {},
        anonymous_tenant=anonymous,
        listen=_listen(f.sub("listen"), "127.0.0.1", 8000),
        grpc=_grpc_listen(f.sub("grpc")),
        admin=_listen(admin, "127.0.0.1", 8002),
        admin_token=_read_secret(base_dir / token_file, "admin.token_file") if token_file else None,
        max_body_bytes=f.get("max_body_bytes", int, 1 << 20, minimum=1024),
        scrape_interval_s=f.get("scrape_interval_s", float, 2.0, minimum=0.05),
        control_interval_s=f.get("control_interval_s", float, 0.5, minimum=0.01),
        realtime=_realtime(f.sub("realtime")),
    )
    f.done()
    known = {t.name for t in tenants}
    for tenant in set(config.api_keys.values()) | ({anonymous} if anonymous else set()):
        if tenant not in known:
            raise ConfigError(f"auth: tenant {tenant!r} has keys but is not listed under tenants (have {sorted(known)})")
    return config


def parse_pool(data: dict) -> PoolConfig:
    """One pool entry on its own (an admin API route); errors name the field from the entry's top."""
    return _pool(_Fields(data, ""))


def _pool(f: "_Fields") -> PoolConfig:
    name = f.get("name", str)
    revisions = {}
    for revision, value in f.get("revisions", dict, {}).items():
        rf = _Fields(value or {}, f"{f.path_of('revisions')}.{revision}")
        revisions[str(revision)] = tuple(_endpoint(e) for e in rf.items("endpoints"))
        rf.done()
    stable = f.get("stable", str)
    canary = f.get("canary", str, None)
    if canary == stable:
        raise ConfigError(f"{f.path_of('canary')}: must differ from stable ({stable!r})")
    tenants = tuple(_pool_tenant(t) for t in f.items("tenants"))
    _unique(f.path_of("tenants"), [t.name for t in tenants], "name")
    pool = PoolConfig(
        name=name,
        model=f.get("model", str, name),
        stable=stable,
        canary=canary,
        canary_weight=f.get("canary_weight", float, 0.0, minimum=0.0, maximum=100.0),
        sticky=f.get("sticky", bool, True),
        revisions=revisions,
        rollback_rules=_rules(f) if "rollback_rules" in f.data else DEFAULT_RULES,
        qos=_qos(f.sub("qos")),
        prefix_affinity=_affinity(f.sub("prefix_affinity")),
        tenants=tenants,
    )
    f.done()
    return pool


def _endpoint(f: "_Fields") -> EndpointConfig:
    target = f.get("target", str)
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"{f.path}.target: must be host:port, got {target!r}")
    endpoint = EndpointConfig(target, f.get("metrics_url", str, None))
    f.done()
    return endpoint


def _rules(f: "_Fields") -> tuple:
    rules = []
    for index, item in enumerate(f.get("rollback_rules", list)):
        path = f"{f.path_of('rollback_rules')}[{index}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"{path}: must be a mapping of one rule kind ({', '.join(RULE_KINDS)}) to its settings")
        ((kind, settings),) = item.items()
        if kind not in RULE_KINDS:
            raise ConfigError(f"{path}: unknown rule {kind!r}; one of {', '.join(RULE_KINDS)}")
        rf = _Fields(settings or {}, f"{path}.{kind}")
        rules.append(_rule(RULE_KINDS[kind], rf))
        rf.done()
    return tuple(rules)


def _rule(kind: type, f: "_Fields"):
    window = f.get("window_s", float, kind.window_s, minimum=1.0)
    if kind is LatencyRatioRule:
        return LatencyRatioRule(
            metric=f.get("metric", str, "e2e", choices=LATENCY_METRICS),
            quantile=f.get("quantile", float, 0.99, minimum=0.5, maximum=1.0),
            max_ratio=f.get("max_ratio", float, 1.3, minimum=1.0),
            min_difference_s=f.get("min_difference_s", float, 0.0, minimum=0.0),
            min_samples=f.get("min_samples", int, 50, minimum=1),
            window_s=window,
        )
    if kind is ErrorRateRule:
        rule = ErrorRateRule(
            max_rate=f.get("max_rate", float, None, minimum=0.0, maximum=1.0),
            max_over_stable=f.get("max_over_stable", float, None, minimum=0.0, maximum=1.0),
            min_samples=f.get("min_samples", int, 50, minimum=1),
            window_s=window,
        )
        if rule.max_rate is None and rule.max_over_stable is None:
            raise ConfigError(f"{f.path}: set max_rate, max_over_stable or both")
        return rule
    if kind is PreemptionRule:
        return PreemptionRule(max_count=f.get("max_count", int, 0, minimum=0), window_s=window)
    return KvFreeRule(
        min_free=f.get("min_free", float, 0.10, minimum=0.0, maximum=1.0),
        min_samples=f.get("min_samples", int, 3, minimum=1),
        window_s=window,
    )


def _qos(f: "_Fields") -> QosConfig:
    d = QosConfig()
    qos = QosConfig(
        max_concurrency_per_endpoint=f.get("max_concurrency_per_endpoint", int, d.max_concurrency_per_endpoint, minimum=1),
        realtime_queue=f.get("realtime_queue", int, d.realtime_queue, minimum=0),
        batch_queue=f.get("batch_queue", int, d.batch_queue, minimum=0),
        max_queue_wait_s=f.get("max_queue_wait_s", float, d.max_queue_wait_s, minimum=0.0),
        batch_share_min=f.get("batch_share_min", float, d.batch_share_min, minimum=0.0, maximum=1.0),
        batch_share_max=f.get("batch_share_max", float, d.batch_share_max, minimum=0.0, maximum=1.0),
        realtime_ttft_target_s=f.get("realtime_ttft_target_s", float, d.realtime_ttft_target_s, minimum=0.001),
        batch_priority=f.get("batch_priority", int, d.batch_priority, minimum=1),
    )
    if qos.batch_share_min > qos.batch_share_max:
        raise ConfigError(f"{f.path}.batch_share_min: must be <= batch_share_max ({qos.batch_share_max})")
    f.done()
    return qos


def _affinity(f: "_Fields") -> PrefixAffinity:
    affinity = PrefixAffinity(
        enabled=f.get("enabled", bool, False),
        prefix_chars=f.get("prefix_chars", int, 512, minimum=1),
        max_load_factor=f.get("max_load_factor", float, 1.5, minimum=1.0),
    )
    f.done()
    return affinity


def _tenant(f: "_Fields") -> TenantConfig:
    tenant = TenantConfig(
        name=f.get("name", str),
        max_concurrent=f.get("max_concurrent", int, None, minimum=1),
        tokens_per_minute=f.get("tokens_per_minute", int, None, minimum=1),
        token_burst=f.get("token_burst", int, None, minimum=1),
        default_qos=f.get("default_qos", str, "realtime", choices=QOS_CLASSES),
    )
    f.done()
    return tenant


def _pool_tenant(f: "_Fields") -> TenantConfig:
    """A tenant's limits on one pool: concurrency and tokens only (its QoS class is router-wide)."""
    tenant = TenantConfig(
        name=f.get("name", str),
        max_concurrent=f.get("max_concurrent", int, None, minimum=1),
        tokens_per_minute=f.get("tokens_per_minute", int, None, minimum=1),
    )
    f.done()
    return tenant


def _realtime(f: "_Fields") -> RealtimeConfig:
    d = RealtimeConfig()
    realtime = RealtimeConfig(
        idle_timeout_s=f.get("idle_timeout_s", float, d.idle_timeout_s, minimum=0.1),
        max_lifetime_s=f.get("max_lifetime_s", float, d.max_lifetime_s, minimum=0.1),
        max_message_bytes=f.get("max_message_bytes", int, d.max_message_bytes, minimum=1024),
        max_conversation_chars=f.get("max_conversation_chars", int, d.max_conversation_chars, minimum=1),
        send_buffer_bytes=f.get("send_buffer_bytes", int, d.send_buffer_bytes, minimum=1024),
    )
    f.done()
    return realtime


def _listen(f: "_Fields", host: str, port: int) -> Listen:
    listen = Listen(f.get("host", str, host), f.get("port", int, port, minimum=0, maximum=65535))
    f.done()
    return listen


def _grpc_listen(f: "_Fields") -> Listen | None:
    """The public gRPC API's address; `enabled: false` turns it off."""
    enabled = f.get("enabled", bool, True)
    listen = _listen(f, "127.0.0.1", 50052)
    return listen if enabled else None


def _api_keys(path: Path, field_name: str) -> dict[str, str]:
    """The key file: `keys: [{key: sk-..., tenant: acme}, ...]`. Returns sha256(key) -> tenant."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{field_name}: {error}") from None
    f = _Fields(data, str(path))
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


def _unique(path: str, values: list, what: str) -> None:
    seen = set()
    for index, value in enumerate(values):
        if value in seen:
            raise ConfigError(f"{path}[{index}].{what}: {value!r} is used twice")
        seen.add(value)


class _Fields:
    """One mapping of the config file, read field by field with its path for error messages."""

    def __init__(self, data, path: str):
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'config'}: must be a mapping, got {json.dumps(data)}")
        self.data = data
        self.path = path
        self._read: set[str] = set()

    def path_of(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type, default=_REQUIRED, *, minimum=None, maximum=None, choices=None):
        self._read.add(key)
        if key not in self.data or self.data[key] is None:
            if default is _REQUIRED:
                raise ConfigError(f"{self.path_of(key)}: required")
            return default
        value = self.data[key]
        if kind is object:
            return value
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise ConfigError(f"{self.path_of(key)}: must be {kind.__name__}, got {json.dumps(value)}")
        if choices is not None and value not in choices:
            raise ConfigError(f"{self.path_of(key)}: must be one of {', '.join(choices)}, got {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{self.path_of(key)}: must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{self.path_of(key)}: must be <= {maximum}, got {value}")
        return value

    def sub(self, key: str) -> "_Fields":
        return _Fields(self.get(key, dict, {}), self.path_of(key))

    def items(self, key: str, required: bool = False) -> list["_Fields"]:
        values = self.get(key, list, _REQUIRED if required else [])
        if required and not values:
            raise ConfigError(f"{self.path_of(key)}: must list at least one")
        return [_Fields(v, f"{self.path_of(key)}[{i}]") for i, v in enumerate(values)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._read)
        if unknown:
            raise ConfigError(f"{self.path_of(unknown[0])}: unknown field (known: {', '.join(sorted(self._read))})")
