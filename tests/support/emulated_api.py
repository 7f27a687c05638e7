"""The emulated Kubernetes API server: kmock's KubernetesEmulator (an in-memory object store that
serves discovery) taught the parts of a real API server that kubectl, kopf and controllers rely on.

From kmock it keeps discovery (/api, /apis/<group>/<version>), the object store with each
object's history (`api.objects[...]`, for assertions), the per-resource event buses and the
Status-shaped errors. It replaces the request handling for resources, because a real server:
- serves every CustomResourceDefinition that is created (from crds/*.yaml or through the API);
- answers lists with kind `<Kind>List`, apiVersion and a resourceVersion, filtered by selectors;
- owns uid, creationTimestamp, resourceVersion (one counter, up on every write) and generation
  (up when anything but metadata and status changes);
- keeps .status out of main-resource writes and everything but .status out of /status writes,
  and maps a scale subresource onto the object as an autoscaling/v1 Scale;
- takes PUT, merge patches, JSON patches and strategic merge patches (see patches.py);
- resumes watches from a resourceVersion and ends them after timeoutSeconds;
- deletes pods bound to a node gracefully (the kubelet finishes), waits for finalizers, and
  cascades deletion over ownerReferences as the garbage collector does (Background policy);
  objects go with their namespace, and are created only in one that exists;
- completes generateName, and starts pods Pending;
- rejects objects that a validation hook finds invalid with 422, as admission would;
- prints custom resources as Tables of their CRD's printer columns for `kubectl get` (tables.py).

Left out: OpenAPI documents (so kubectl needs --validate=false), protobuf bodies (so kubectl's
`create <kind> NAME` generators fail; `-f` works), server-side apply, deletecollection, the
Orphan policy (Foreground acts as Background), defaulting from CRD schemas, pods/log and other
connect subresources, Tables of built-in kinds (kubectl falls back to NAME and AGE),
authentication, and removing a deleted CRD's resource.

Use it in-process with `async with serving(EmulatedApiServer()) as url`, or as a process:
`python -m tests.support.emulated_api --port N --kubeconfig PATH`.
"""

import argparse
import asyncio
import collections
import contextlib
import copy
import datetime
import json
import random
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import yaml
from kmock import KubernetesEmulator, KubernetesScaffold, Request, resource

from tests.support import object_writes, patches
from tests.support.api_errors import FieldError, dot, failure_status, invalid, not_found, status_error
from tests.support.api_paths import ApiPath, api_version_of, parse_api_path
from tests.support.crd_resources import PrinterColumn, ScalePaths, served_resources
from tests.support.kubeconfig import write_kubeconfig
from tests.support.object_selectors import Matcher, SelectorError, field_matcher, label_matcher
from tests.support.tables import table_of, wants_table

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
# How many past events a watch can resume from; an older resourceVersion gets 410 Expired.
EVENT_HISTORY = 10_000

_CRDS = resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
_NAMESPACES = resource("", "v1", "namespaces")
_PODS = resource("", "v1", "pods")
_INITIAL_STATUS = {_PODS: {"phase": "Pending"}}
_DEFAULT_POD_GRACE_S = 30
_CLOSED = None  # put on every bus when the server stops, so that open watches end
EMULATED_VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0+emulated"}


Validator = Callable[[Mapping[str, Any]], Iterable[FieldError]]


def _by_resource(validators: Mapping[str, Validator]) -> dict[resource, Validator]:
    return {resource(key): validator for key, validator in validators.items()}


@attrs.define(kw_only=True)
class EmulatedApiServer(KubernetesEmulator):
    """`validators` maps a resource ("shoal.dev/v1alpha1/modelpools") to a hook that sees every
    object about to be stored there (create, update, status, scale) and returns its errors."""

    validators: dict[resource, Validator] = attrs.field(factory=dict, converter=_by_resource)
    _scales: dict[resource, ScalePaths] = attrs.field(factory=dict, init=False)
    _columns: dict[resource, tuple[PrinterColumn, ...]] = attrs.field(factory=dict, init=False)  # custom resources' only
    _revision: int = attrs.field(default=0, init=False)
    _history: collections.deque = attrs.field(factory=lambda: collections.deque(maxlen=EVENT_HISTORY), init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()

    async def __aenter__(self) -> "EmulatedApiServer":
        await super().__aenter__()
        async with self._lock:
            if self._get(_NAMESPACES, None, "default") is None:
                await self._create(_NAMESPACES, None, {"metadata": {"name": "default"}})
        return self

    async def create_crds(self, paths: Iterable[Path]) -> None:
        """Create the CustomResourceDefinitions in these YAML files, as `kubectl apply` would."""
        for path in paths:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    async with self._lock:
                        await self._create(_CRDS, None, doc)

    async def close_watches(self) -> None:
        """End every open watch stream (clients reconnect, or stop with the server)."""
        for bus in self._buses.values():
            await bus.put(_CLOSED)

    # --- requests -------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = parse_api_path(raw_request.path)
        if path is None:  # discovery and other non-resource paths: kmock's
            return await super().__call__(raw_request)
        # kmock's request parser fails on /api/v1/namespaces, so resource requests are read here.
        request = Request(
            id=len(self._requests),
            raw_request=raw_request,
            method=raw_request.method,
            url=raw_request.url,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            body=await raw_request.read(),
        )
        self._requests.append(request)
        try:
            return await self._serve_resource(raw_request, request, path)
        except Exception as error:  # a Status for the client, as kmock renders its own errors
            return await self._render_error(error)

    async def _serve_server_version(self, request: Request) -> dict[str, Any]:
        # kmock answers 1.26; what is emulated here (CRD CEL rules with fieldPath among it) is
        # newer, and clients gate on it (helm's kubeVersion, the CRD's 1.28 floor).
        return {**await super()._serve_server_version(request), **EMULATED_VERSION}

    async def _handle(self, request: Request) -> aiohttp.web.StreamResponse:
        # Only non-resource paths come here: kmock's discovery, without its object writes.
        return await KubernetesScaffold._handle(self, request)

    async def _serve_resource(self, raw_request: aiohttp.web.BaseRequest, request: Request, path: ApiPath) -> aiohttp.web.StreamResponse:
        res = resource(path.group, path.version, path.plural)
        if res not in self.resources:
            raise status_error(404, "NotFound", "the server could not find the requested resource")
        info = self.resources[res]
        namespace = path.namespace if info.namespaced else None
        method = str(request.method.value)
        if path.name is None:
            if method == "GET" and request.params.get("watch") in ("true", "1"):
                return await self._watch(raw_request, request, res, namespace)
            if method == "GET":
                listed = await self._list(request, res, namespace)
                if self._as_table(res, request):
                    return _json(table_of(listed["items"], self._columns[res], listed["metadata"]["resourceVersion"], _now()))
                return _json(listed)
            if method == "POST" and path.subresource is None:
                async with self._lock:
                    return _json(await self._create(res, namespace, _body(request)), status=201)
            raise status_error(405, "MethodNotAllowed", f"{method} on a collection is not supported by the emulator")
        sub = path.subresource
        if sub is not None and not (sub == "status" and "status" in info.subresources or sub == "scale" and res in self._scales):
            raise status_error(404, "NotFound", f"the server could not find the requested resource ({path.plural}/{sub})")
        async with self._lock:
            obj = self._get(res, namespace, path.name)
            if obj is None:
                raise not_found(res, path.name)
            if method == "GET" and sub is None and self._as_table(res, request):
                return _json(table_of([obj], self._columns[res], obj["metadata"]["resourceVersion"], _now()))
            if method == "GET":
                return _json(object_writes.scale_of(obj, self._scales[res]) if sub == "scale" else obj)
            if method in ("PUT", "PATCH"):
                return _json(await self._write(request, res, obj, sub))
            if method == "DELETE" and sub is None:
                return _json(await self._delete(res, obj, **_delete_options(request)))
        raise status_error(405, "MethodNotAllowed", f"{method} is not supported here")

    def _as_table(self, res: resource, request: Request) -> bool:
        """kubectl get asks for a Table; custom resources are printed as their CRD says."""
        return res in self._columns and wants_table(request.headers.get("Accept", ""))

    async def _list(self, request: Request, res: resource, namespace: str | None) -> dict[str, Any]:
        matches = _matcher(request.params)
        async with self._lock:
            items = [obj for obj in self._live(res, namespace) if matches(obj)]
            revision = self._revision
        return {
            "apiVersion": api_version_of(res.group, res.version),
            "kind": f"{self.resources[res].kind}List",
            "metadata": {"resourceVersion": str(revision)},
            "items": items,
        }

    async def _watch(self, raw_request: aiohttp.web.BaseRequest, request: Request, res: resource, namespace: str | None) -> aiohttp.web.StreamResponse:
        matches = _matcher(request.params)
        timeout = float(request.params["timeoutSeconds"]) if "timeoutSeconds" in request.params else None
        since = request.params.get("resourceVersion", "")
        if since not in ("", "0") and not since.isdigit():
            raise status_error(400, "BadRequest", f"invalid resourceVersion {since!r}")
        bus = self._buses[res]
        async with self._lock:  # no write can fall between the backlog and the live events
            mark = await bus.mark()
            backlog = self._backlog(res, namespace, since)

        def wanted(event: dict[str, Any]) -> bool:
            obj = event["object"]
            return event["type"] == "ERROR" or (namespace in (None, obj["metadata"].get("namespace")) and matches(obj))

        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(raw_request)
            async with asyncio.timeout(timeout):
                for event in backlog:
                    if wanted(event):
                        await response.write(json.dumps(event).encode() + b"\n")
                async with contextlib.aclosing(bus.stream(since=mark)) as events:
                    async for event in events:
                        if event is _CLOSED:
                            break
                        if wanted(event):
                            await response.write(json.dumps(event).encode() + b"\n")
        except (TimeoutError, ConnectionResetError):
            pass  # the watch's time is up, or the client went away
        finally:
            await bus.unmark(mark)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    def _backlog(self, res: resource, namespace: str | None, since: str) -> list[dict[str, Any]]:
        """What a new watch sees before live events: every object as ADDED when it names no
        resourceVersion, else the events after that one (or 410 when they are no longer kept)."""
        if since in ("", "0"):
            return [{"type": "ADDED", "object": obj} for obj in self._live(res, namespace)]
        if len(self._history) == self._history.maxlen and int(since) < self._history[0][0] - 1:
            expired = failure_status(410, "Expired", f"too old resource version: {since} ({self._history[0][0] - 1})")
            return [{"type": "ERROR", "object": expired}]
        return [event for revision, r, event in self._history if r == res and revision > int(since)]

    # --- writes (the caller holds the lock) -----------------------------------------------------

    async def _create(self, res: resource, namespace: str | None, body: Any) -> dict[str, Any]:
        info = self.resources[res]
        if not isinstance(body, Mapping):
            raise status_error(400, "BadRequest", "the body must be a JSON object")
        metadata = body.get("metadata") or {}
        if info.namespaced:
            if namespace is not None and metadata.get("namespace") not in (None, namespace):
                raise status_error(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            namespace = namespace or metadata.get("namespace")
            if namespace is None:
                raise status_error(400, "BadRequest", f"{res.plural} are namespaced: create them under /namespaces/<namespace>/")
            if self._get(_NAMESPACES, None, namespace) is None:
                raise not_found(_NAMESPACES, namespace)
        name = metadata.get("name") or (metadata["generateName"] + _random_suffix() if metadata.get("generateName") else None)
        if not name:
            raise invalid(info.kind, res.group, "", [FieldError("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")])
        if self._get(res, namespace, name) is not None:
            raise status_error(409, "AlreadyExists", f'{res.plural}{dot(res.group)} "{name}" already exists', name=name, group=res.group, kind=res.plural)
        obj = object_writes.created(
            body,
            api_version=api_version_of(res.group, res.version),
            kind=info.kind,
            name=name,
            namespace=namespace,
            uid=str(uuid.uuid4()),
            now=object_writes.timestamp(_now()),
            resource_version=self._revision + 1,
            status_subresource="status" in info.subresources,
            initial_status=_INITIAL_STATUS.get(res),
        )
        await self._commit(res, obj, "ADDED")
        return obj

    async def _write(self, request: Request, res: resource, old: dict[str, Any], sub: str | None) -> dict[str, Any]:
        info = self.resources[res]
        current = object_writes.scale_of(old, self._scales[res]) if sub == "scale" else old
        body = _body(request)
        if request.method.value == "PUT":
            if not isinstance(body, Mapping):
                raise status_error(400, "BadRequest", "the body must be a JSON object")
            new = body
        else:
            content_type = _content_type(request)
            if content_type not in patches.SUPPORTED:
                raise status_error(415, "UnsupportedMediaType", f"patch type {content_type!r} is not supported by the emulator (server-side apply is not emulated); use one of {', '.join(patches.SUPPORTED)}")
            try:
                new = patches.apply_patch(content_type, current, body)
            except patches.PatchError as problem:
                raise invalid(info.kind, res.group, old["metadata"]["name"], [FieldError("", str(problem))]) from None
        wanted_version = (new.get("metadata") or {}).get("resourceVersion")
        if wanted_version is not None and wanted_version != old["metadata"]["resourceVersion"]:
            message = f'Operation cannot be fulfilled on {res.plural}{dot(res.group)} "{old["metadata"]["name"]}": the object has been modified; please apply your changes to the latest version and try again'
            raise status_error(409, "Conflict", message, name=old["metadata"]["name"], group=res.group, kind=res.plural)
        revision = self._revision + 1
        if sub == "scale":
            replicas = (new.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid("Scale", "autoscaling", old["metadata"]["name"], [FieldError("spec.replicas", f"Invalid value: {replicas!r}: must be an integer >= 0")])
            stored = object_writes.updated(old, object_writes.scaled(old, self._scales[res], replicas), resource_version=revision, status_subresource="status" in info.subresources)
        elif sub == "status":
            stored = object_writes.status_updated(old, new, resource_version=revision)
        else:
            stored = object_writes.updated(old, new, resource_version=revision, status_subresource="status" in info.subresources)
        if stored is not None:
            await self._commit(res, stored, "MODIFIED")
            if _released(stored):
                await self._remove(res, stored)
        result = stored or old
        return object_writes.scale_of(result, self._scales[res]) if sub == "scale" else result

    async def _delete(self, res: resource, obj: dict[str, Any], *, grace: int | None, policy: str | None) -> dict[str, Any]:
        if policy not in (None, "Background", "Foreground"):
            raise status_error(422, "Invalid", f"propagationPolicy {policy!r} is not supported by the emulator (only Background; Foreground is treated as Background)")
        metadata, spec = obj["metadata"], obj.get("spec") or {}
        # A pod on a node stops gracefully: the kubelet deletes it for good once its containers
        # are gone. Any other object goes at once, unless finalizers hold it.
        graceful = res == _PODS and spec.get("nodeName") and (obj.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        grace = (spec.get("terminationGracePeriodSeconds", _DEFAULT_POD_GRACE_S) if grace is None else grace) if graceful else 0
        if metadata.get("deletionTimestamp") and grace >= metadata.get("deletionGracePeriodSeconds", 0):
            return obj  # already on its way out, no sooner than asked now
        if grace > 0 or metadata.get("finalizers"):
            deletion_time = object_writes.timestamp(_now() + datetime.timedelta(seconds=grace))
            marked = object_writes.marked_for_deletion(obj, deletion_time=deletion_time, grace_seconds=grace, resource_version=self._revision + 1)
            await self._commit(res, marked, "MODIFIED", validate=False)
            return marked
        await self._remove(res, obj)
        details = {"name": metadata["name"], "group": res.group, "kind": res.plural, "uid": metadata["uid"]}
        return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success", "details": details}

    async def _remove(self, res: resource, obj: dict[str, Any]) -> None:
        """The object is gone: watchers see DELETED; what it owned (or held, for a namespace) is
        deleted in turn, as the garbage collector and the namespace controller would."""
        metadata = obj["metadata"]
        self._objects[res, metadata.get("namespace"), metadata["name"]].delete()
        self._revision += 1
        gone = {**obj, "metadata": {**metadata, "resourceVersion": str(self._revision)}}
        await self._emit(res, "DELETED", gone)
        live_uids = {o["metadata"]["uid"] for _, o in self._all_live()}
        for dependent_res, dependent in self._all_live():
            references = dependent["metadata"].get("ownerReferences") or []
            owned = any(reference.get("uid") == metadata["uid"] for reference in references)
            in_namespace = res == _NAMESPACES and dependent["metadata"].get("namespace") == metadata["name"]
            if not (owned or in_namespace):
                continue
            current = self._get(dependent_res, dependent["metadata"].get("namespace"), dependent["metadata"]["name"])
            if current is None:
                continue  # already removed by an earlier step of this cascade
            others = [reference for reference in references if reference.get("uid") != metadata["uid"]]
            if not in_namespace and any(reference.get("uid") in live_uids for reference in others):
                # Another owner still exists: the collector only drops the reference to this one.
                released = copy.deepcopy(current)
                released["metadata"]["ownerReferences"] = others
                info = self.resources[dependent_res]
                stored = object_writes.updated(current, released, resource_version=self._revision + 1, status_subresource="status" in info.subresources)
                await self._commit(dependent_res, stored, "MODIFIED", validate=False)
            else:
                await self._delete(dependent_res, current, grace=None, policy=None)

    async def _commit(self, res: resource, obj: dict[str, Any], event: str, *, validate: bool = True) -> None:
        """Store a new version of an object (validated first) under the next resourceVersion."""
        if validate:
            self._validate(res, obj)
        metadata = obj["metadata"]
        key = (res, metadata.get("namespace"), metadata["name"])
        if key in self._objects:
            self._objects[key].history.append(obj)
        else:
            self._objects[key] = obj
        self._revision += 1
        await self._emit(res, event, obj)
        if res == _CRDS:
            for served in served_resources(obj):
                self.resources[served.resource] = served.info
                self._columns[served.resource] = served.columns
                if served.scale is not None:
                    self._scales[served.resource] = served.scale

    async def _emit(self, res: resource, event_type: str, obj: dict[str, Any]) -> None:
        event = {"type": event_type, "object": obj}
        self._history.append((self._revision, res, event))
        await self._buses[res].put(event)

    def _validate(self, res: resource, obj: dict[str, Any]) -> None:
        validator = self.validators.get(res)
        errors = list(validator(obj)) if validator is not None else []
        if errors:
            raise invalid(self.resources[res].kind, res.group, obj["metadata"]["name"], errors)

    # --- reads ----------------------------------------------------------------------------------

    def _get(self, res: resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (res, namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return self._objects[key].raw

    def _live(self, res: resource, namespace: str | None) -> list[dict[str, Any]]:
        return [obj for r, obj in self._all_live() if r == res and namespace in (None, obj["metadata"].get("namespace"))]

    def _all_live(self) -> list[tuple[resource, dict[str, Any]]]:
        return [(key[0], obj.raw) for key, obj in self._objects.items() if not obj.deleted]

    async def _serve_version(self, request: Request) -> dict[str, Any]:
        # kmock names the core group version "/v1" (kubectl then finds no namespaces), and it
        # describes a subresource like its resource, short names included (kubectl then warns that
        # `mp` is ambiguous); a real one has none, fewer verbs, and scale speaks Scale.
        payload = await super()._serve_version(request)
        payload["groupVersion"] = payload["groupVersion"].lstrip("/")
        for entry in payload["resources"]:
            if "/" in entry["name"]:
                entry.update(shortNames=[], categories=[], singularName="", verbs=["get", "patch", "update"])
            if entry["name"].endswith("/scale"):
                entry.update(kind="Scale", group="autoscaling", version="v1")
        return payload


# --- the HTTP edge ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(api: EmulatedApiServer, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve the API on host:port (0: a free port) while inside; yields its URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    async with api:
        # Open watches are ended first; a client that reconnects one meanwhile is not waited for.
        runner = aiohttp.web.ServerRunner(aiohttp.web.Server(api), shutdown_timeout=1)
        await runner.setup()
        await aiohttp.web.SockSite(runner, sock).start()
        try:
            yield f"http://{host}:{sock.getsockname()[1]}"
        finally:
            await api.close_watches()
            await runner.cleanup()


def crd_files(directory: Path = CRD_DIR) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


async def _serve_until_stopped(args: argparse.Namespace) -> None:
    api = EmulatedApiServer()
    async with serving(api, host=args.host, port=args.port) as url:
        await api.create_crds(crd_files(args.crds))
        write_kubeconfig(args.kubeconfig, url)
        print(f"emulated Kubernetes API on {url}, kubeconfig {args.kubeconfig}", flush=True)
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve an emulated Kubernetes API until SIGTERM or Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (see the kubeconfig)")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="written once the server listens")
    parser.add_argument("--crds", type=Path, default=CRD_DIR, help="every *.yaml here holding a CRD is served")
    asyncio.run(_serve_until_stopped(parser.parse_args(argv)))


# --- helpers ------------------------------------------------------------------------------------


def _body(request: Request) -> Any:
    if not request.body:
        return None
    if not _content_type(request).endswith("json"):
        # kubectl's generator commands (`kubectl create namespace x`) send protobuf; `-f` sends JSON.
        message = f"the emulator reads JSON bodies only, not {_content_type(request)!r}; use kubectl create/apply -f"
        raise status_error(415, "UnsupportedMediaType", message)
    try:
        return json.loads(request.body)
    except ValueError:
        raise status_error(400, "BadRequest", "the body is not JSON (the emulator speaks JSON only)") from None


def _content_type(request: Request) -> str:
    value = next((value for key, value in request.headers.items() if key.lower() == "content-type"), "")
    return value.split(";")[0].strip()


def _delete_options(request: Request) -> dict[str, Any]:
    """DeleteOptions from the body (kubectl) or the query (other clients)."""
    body = _body(request)
    options = body if isinstance(body, Mapping) else {}
    grace = options.get("gracePeriodSeconds", request.params.get("gracePeriodSeconds"))
    return {"grace": None if grace is None else int(grace), "policy": options.get("propagationPolicy", request.params.get("propagationPolicy"))}


def _matcher(params: Mapping[str, str]) -> Matcher:
    try:
        tests = [label_matcher(params["labelSelector"])] if params.get("labelSelector") else []
        tests += [field_matcher(params["fieldSelector"])] if params.get("fieldSelector") else []
    except SelectorError as problem:
        raise status_error(400, "BadRequest", str(problem)) from None
    return lambda obj: all(test(obj) for test in tests)


def _released(obj: Mapping[str, Any]) -> bool:
    """Marked for deletion with nothing left to wait for: no finalizers, no grace period."""
    metadata = obj["metadata"]
    return bool(metadata.get("deletionTimestamp")) and not metadata.get("finalizers") and not metadata.get("deletionGracePeriodSeconds")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _random_suffix() -> str:
    """Five characters, drawn as the API server draws them for generateName."""
    return "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))


def _json(payload: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.json_response(payload, status=status)


if __name__ == "__main__":
    main()
