"""Who is asking and in which QoS class, for every surface.

API keys (`Authorization: Bearer <key>`) map to tenants through the key file; keys are compared as
SHA-256 hashes and never logged nor echoed, a malformed header's value included.

A request's class comes from, in order: the `x-shoal-qos` header (gRPC: the qos_class field), the
body's `service_tier` (flex/batch -> batch, priority/realtime -> realtime, auto/default -> the
tenant's default) or vLLM's `priority` field (> 0 -> batch), and last the tenant's default class.
"""

from shoal.route_contract import QOS_CLASSES
from shoal.router.config import RouterConfig, hash_api_key
from shoal.router.errors import InvalidRequest, Unauthenticated

QOS_HEADER = "x-shoal-qos"
SESSION_HEADER = "x-session-id"
MAX_AUTHORIZATION_CHARS = 1024  # far above any key; longer is a mistake or an attack, refused unread
SERVICE_TIERS = {
    "auto": None,
    "default": None,
    "flex": "batch",
    "batch": "batch",
    "priority": "realtime",
    "realtime": "realtime",
}


class Authenticator:
    def __init__(self, config: RouterConfig):
        self._tenants = dict(config.api_keys)
        self._anonymous = config.anonymous_tenant
        self._defaults = {t.name: t.default_qos for t in config.tenants}

    def tenant(self, authorization: str | None) -> str:
        """The tenant for an Authorization header value; raises Unauthenticated."""
        if not authorization:
            if self._anonymous is not None:
                return self._anonymous
            raise Unauthenticated(
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        if len(authorization) > MAX_AUTHORIZATION_CHARS or not (
            authorization.isascii() and authorization.isprintable()
        ):
            # Never echoed: whatever the header holds may be a key.
            raise Unauthenticated(
                "Malformed Authorization header: expected `Bearer <key>` in printable ASCII, "
                f"at most {MAX_AUTHORIZATION_CHARS} characters."
            )
        scheme, _, key = authorization.strip().partition(" ")
        tenant = self._tenants.get(hash_api_key(key.strip())) if scheme.lower() == "bearer" and key.strip() else None
        if tenant is None:
            raise Unauthenticated("Incorrect API key provided.")
        return tenant

    def default_qos(self, tenant: str) -> str:
        return self._defaults.get(tenant, "realtime")


def qos_class(
    default: str, header: str | None = None, service_tier: str | None = None, priority: int | None = None
) -> str:
    if header:
        value = header.strip().lower()
        if value not in QOS_CLASSES:
            raise InvalidRequest(
                None, f"Invalid {QOS_HEADER} header {header!r}: expected one of {', '.join(QOS_CLASSES)}."
            )
        return value
    if service_tier is not None:
        if service_tier not in SERVICE_TIERS:
            raise InvalidRequest(
                "service_tier",
                f"Invalid value {service_tier!r} for service_tier: expected one of {', '.join(SERVICE_TIERS)}.",
            )
        return SERVICE_TIERS[service_tier] or default
    if priority is not None:
        return "batch" if priority > 0 else "realtime"
    return default
