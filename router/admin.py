"""The admin API, on its own port (keep it inside the cluster); the operator drives routes and
rollouts through it. With `admin.token_file` set, every call under /admin/ needs
`Authorization: Bearer <token>` (config.py refuses a host other than loopback without one).

The router's Prometheus /metrics is on this port too, not on the public one: its labels name every
tenant and show their usage. It needs no token: Prometheus scrapes it as it scrapes the runtimes'
and the operator's, and it exposes counters and gauges, no control.

    GET    /admin/pools                                  every pool: split, verdicts, endpoints, QoS, tenant limits
    GET    /admin/pools/{pool}                           one pool
    PUT    /admin/pools/{pool}/route                     create or change the pool (body below); 200 with the pool;
                                                         400 naming the field; 409 if its split would send traffic
                                                         to a rolled-back revision or another pool of its model
                                                         takes one of its QoS classes
    DELETE /admin/pools/{pool}/route                     remove the pool (404 if none): its model answers 404
    GET    /admin/pools/{pool}/weights                   {"stable", "canary", "canary_weight", "stable_weight"}
    PUT    /admin/pools/{pool}/weights                   body {"stable"?, "canary", "canary_weight"};
                                                         409 if it would send traffic to a rolled-back revision
    GET    /admin/pools/{pool}/rollback                  verdicts: revision, rules broken, observed values, time
    GET    /admin/pools/{pool}/load?window_s=60          what the operator sizes the pool from (shoal/pool_load.py):
                                                         replicas and ready ones, requests held while none is
                                                         ready and the oldest one's wait, the runtimes' waiting
                                                         and running requests and mean KV cache usage as last
                                                         scraped, p95 TTFT and requests over the window
    POST   /admin/pools/{pool}/revisions/{revision}/reset  forget a verdict (its weight stays 0 until set)
    GET    /admin/measurements?window_s=60               windows per pool x revision x QoS class, and how many
                                                         of each revision's runtimes' /metrics fail
    GET    /admin/tenants                                in-flight requests and token buckets
    GET    /metrics                                      the router's Prometheus metrics (no token)

A route's body is a Route as JSON (shoal/route_contract.py), the same as one `pools[]` entry of the
config file and read by the same parser (`name` may be left out; if present it must be the path's):
model, qos_classes (which of the model's QoS classes it takes, default both; another pool of the
model may take the others: traffic/model_pools.py), stable, canary, canary_weight, revisions {rev:
{endpoints: [{target, metrics_url}]}}, qos, rollback_rules, prefix_affinity, sticky, tenants [{name,
max_concurrent?, tokens_per_minute?}], limits on this pool on top of the router-wide ones (a name
the router has no tenant for is accepted and logged: it has no keys), speculative {qos_classes?,
tenants_off?, max_load?}, which requests may speculate (traffic/speculation.py), and cold_start
{enabled?, max_queued?, max_wait_s?}, how its requests wait while it has no ready runtime
(cold_start.py). A changed route keeps the pool's verdicts, measurements, held requests and requests
in flight; a refused one changes nothing, endpoints included; the same route again changes nothing
at all, so the operator repeats it every few seconds and a restarted router has its routes back at
once. Its endpoints join those of the config file's source (routes.py, backends/route_table.py).

Why the admin API and not a ConfigMap the router watches: a push is acknowledged (the operator sees
200, 400 or 409, and a 409 names the rolled-back revision), it takes effect at once rather than
after a kubelet sync, it reaches each replica separately (so the operator knows which have it), and
it is the channel the operator already reads verdicts and measurements from, with the same token.

Changing weights or routes affects new requests only; requests in flight finish where they are.
"""

import hmac
import json
import math
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from shoal.route_contract import QOS_CLASSES, ScrapeHealth, measurement_to_json, rollback_to_json, verdict_to_json
from shoal.router.backends.registry import BackendRegistry
from shoal.router.config import ConfigError, parse_pool
from shoal.router.pools import PoolState
from shoal.router.routes import RouteConflict, Routes
from shoal.router.traffic.measurements import Measurements
from shoal.router.traffic.rollout import RolloutConflict
from shoal.router.traffic.tenants import TenantLimiter

METRICS_PATH = "/metrics"


def build_admin_app(
    routes: Routes,
    backends: BackendRegistry,
    measurements: Measurements,
    limiter: TenantLimiter,
    token: str | None,
    metrics: Handler,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    pools = routes.pools

    def pool_or_404(request: web.Request) -> PoolState:
        pool = pools.get(request.match_info["pool"])
        if pool is None:
            raise _error(404, f"no pool named {request.match_info['pool']!r}; have {sorted(pools)}")
        return pool

    def limits(of: TenantLimiter, now: float) -> dict:
        return {t: {"in_flight": of.in_flight(t), **vars(of.status(t, now))} for t in of.tenants()}

    def weights(pool: PoolState) -> dict:
        split = pool.rollout.split
        return {
            "stable": split.stable,
            "canary": split.canary,
            "canary_weight": split.effective_canary_weight,
            "stable_weight": split.stable_weight,
        }

    def describe(pool: PoolState) -> dict:
        revisions = {}
        for revision in sorted(
            backends.revisions(pool.name) | set(filter(None, [pool.rollout.split.stable, pool.rollout.split.canary]))
        ):
            verdict = pool.rollout.rolled_back.get(revision)
            revisions[revision] = {
                "rolled_back": verdict_to_json(verdict) if verdict else None,
                "endpoints": [
                    {
                        "target": b.endpoint.target,
                        "ready": b.ready,
                        "metrics_failing": b.metrics_failing,
                        "outstanding": b.outstanding,
                        "kv_cache_usage": b.scraped.kv_usage if b.scraped else None,
                        "num_requests_waiting": b.scraped.waiting if b.scraped else None,
                        "num_requests_running": b.scraped.running if b.scraped else None,
                    }
                    for b in sorted(backends.backends(pool.name, revision), key=lambda b: b.endpoint.target)
                ],
            }
        gate = pool.gate
        return {
            "name": pool.name,
            "model": pool.config.model,
            "weights": weights(pool),
            "revisions": revisions,
            "qos": {
                "capacity": gate.policy.capacity,
                "batch_limit": gate.policy.batch_limit,
                "batch_share": round(pool.batch_share_now(), 4),
                "in_flight": {q: gate.in_flight(q) for q in QOS_CLASSES},
                "queued": {q: gate.queued(q) for q in QOS_CLASSES},
            },
            "tenants": limits(pool.limiter, clock()),
        }

    async def list_pools(request: web.Request) -> web.Response:
        return web.json_response({"pools": [describe(p) for p in pools.values()]})

    async def get_pool(request: web.Request) -> web.Response:
        return web.json_response(describe(pool_or_404(request)))

    async def put_route(request: web.Request) -> web.Response:
        name = request.match_info["pool"]
        body = await _json_body(request, "one pool entry as in the config file's pools[]")
        if not isinstance(body, dict):
            raise _error(400, "the body must be a JSON object: one pool entry as in the config file's pools[]")
        if body.get("name", name) != name:
            raise _error(400, f"name: must be {name!r}, the pool in the path, got {json.dumps(body['name'])}")
        try:
            pool = routes.put(parse_pool({**body, "name": name}))
        except ConfigError as error:
            raise _error(400, str(error)) from None
        except RolloutConflict as conflict:
            raise _error(409, f"{conflict}: POST /admin/pools/{name}/revisions/{conflict.revision}/reset") from None
        except RouteConflict as conflict:
            raise _error(409, str(conflict)) from None
        return web.json_response(describe(pool))

    async def delete_route(request: web.Request) -> web.Response:
        name = request.match_info["pool"]
        if not routes.delete(name):
            raise _error(404, f"no pool named {name!r}; have {sorted(pools)}")
        return web.json_response({"pool": name, "deleted": True})

    async def get_weights(request: web.Request) -> web.Response:
        return web.json_response(weights(pool_or_404(request)))

    async def put_weights(request: web.Request) -> web.Response:
        pool = pool_or_404(request)
        body = await _json_body(request, '{"stable"?, "canary", "canary_weight"}')
        if not isinstance(body, dict) or set(body) - {"stable", "canary", "canary_weight"}:
            raise _error(400, "expected an object with stable (optional), canary and canary_weight")
        split = pool.rollout.split
        stable = body.get("stable", split.stable)
        canary = body.get("canary", split.canary)
        weight = body.get("canary_weight", split.canary_weight if canary == split.canary else 0.0)
        if not isinstance(stable, str) or not (canary is None or isinstance(canary, str)):
            raise _error(400, "stable and canary must be revision names (canary may be null)")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise _error(400, "canary_weight must be a number in [0, 100]")
        try:
            pool.rollout.set_weights(stable, canary, float(weight))
        except RolloutConflict as conflict:
            raise _error(
                409, f"{conflict}: POST /admin/pools/{pool.name}/revisions/{conflict.revision}/reset"
            ) from None
        except ValueError as error:
            raise _error(400, str(error)) from None
        pool.refresh(backends)
        return web.json_response(weights(pool))

    async def get_rollback(request: web.Request) -> web.Response:
        pool = pool_or_404(request)
        return web.json_response(rollback_to_json(pool.name, pool.rollout.rolled_back.values()))

    async def reset(request: web.Request) -> web.Response:
        pool = pool_or_404(request)
        revision = request.match_info["revision"]
        if not pool.rollout.reset(revision):
            raise _error(404, f"revision {revision!r} of pool {pool.name!r} is not rolled back")
        return web.json_response({"pool": pool.name, "revision": revision, "reset": True, "weights": weights(pool)})

    async def get_load(request: web.Request) -> web.Response:
        pool = pool_or_404(request)
        window_s = _window_s(request.query.get("window_s", "60"))
        return web.json_response(pool.measured_load(backends, measurements, window_s, clock()).to_json())

    async def get_measurements(request: web.Request) -> web.Response:
        window_s = _window_s(request.query.get("window_s", "60"))
        now = clock()
        out = []
        for pool in pools.values():
            for revision in sorted(set(measurements.revisions(pool.name)) | backends.revisions(pool.name)):
                every = measurements.stats(pool.name, revision, window_s, now).summary()
                per_class = {
                    qos: measurements.stats(pool.name, revision, window_s, now, qos).summary() for qos in QOS_CLASSES
                }
                scraped = [b for b in backends.backends(pool.name, revision) if b.endpoint.metrics_url]
                scrapes = ScrapeHealth(len(scraped), sum(b.metrics_failing for b in scraped))
                out.append(measurement_to_json(pool.name, revision, window_s, every, per_class, scrapes))
        return web.json_response({"measurements": out})

    async def get_tenants(request: web.Request) -> web.Response:
        return web.json_response({"tenants": limits(limiter, clock())})

    @web.middleware
    async def require_token(request: web.Request, handler):
        if token is not None and request.path != METRICS_PATH:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                raise _error(401, "the admin API needs Authorization: Bearer <admin token>")
        return await handler(request)

    app = web.Application(middlewares=[require_token])
    app.router.add_get("/admin/pools", list_pools)
    app.router.add_get("/admin/pools/{pool}", get_pool)
    app.router.add_put("/admin/pools/{pool}/route", put_route)
    app.router.add_delete("/admin/pools/{pool}/route", delete_route)
    app.router.add_get("/admin/pools/{pool}/weights", get_weights)
    app.router.add_put("/admin/pools/{pool}/weights", put_weights)
    app.router.add_get("/admin/pools/{pool}/rollback", get_rollback)
    app.router.add_post("/admin/pools/{pool}/revisions/{revision}/reset", reset)
    app.router.add_get("/admin/pools/{pool}/load", get_load)
    app.router.add_get("/admin/measurements", get_measurements)
    app.router.add_get("/admin/tenants", get_tenants)
    app.router.add_get(METRICS_PATH, metrics)
    return app


_ERRORS = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 404: web.HTTPNotFound, 409: web.HTTPConflict}


async def _json_body(request: web.Request, shape: str):
    try:
        return json.loads(await request.read())
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or an integer of over 4300 digits
        raise _error(400, f"the body must be JSON: {shape}") from None


def _window_s(value: str) -> float:
    try:
        window_s = float(value)
    except ValueError:
        window_s = math.nan
    if not (math.isfinite(window_s) and window_s > 0):
        raise _error(400, "window_s: must be a positive, finite number of seconds")
    return window_s


def _error(status: int, message: str) -> web.HTTPException:
    return _ERRORS[status](text=json.dumps({"error": message}), content_type="application/json")
