"""What the local node runs for a pod, worked out as the kubelet would (pure): its one container
as a local process (argv, env, working folder, mounts, probes, restart policy), or the reason this
node cannot run it. Pods here are processes, not containers: there is no image, and nothing
isolates a pod's process but its network and mount namespaces (pod_sandbox.py).

Runs: a container whose command starts with `shoal` (this venv's `shoal`) or `python`/`python3`
(this venv's Python, for tests' small scripts); args and env with $(VAR) references; env and
envFrom as pod_env.py says; volumes as pod_volumes.py says, mounted with subPath or subPathExpr
and readOnly; workingDir (else `/`); httpGet (HTTP) and tcpSocket probes on named or numbered
ports; restartPolicy; terminationGracePeriodSeconds.

Refused (UnsupportedPod: the node reports the pod Failed, reason UnsupportedByLocalNode): any
other command or an image's own entrypoint, more than one container, initContainers, other volume
types (persistentVolumeClaim, hostPath...), exec and grpc probes, lifecycle hooks, hostNetwork,
and any pod field not listed below.

Accepted and ignored, as they change nothing for a local process: image and imagePullPolicy,
resources (the scheduler counts requests; no limit is enforced), securityContext (runAsUser,
readOnlyRootFilesystem, capabilities...: not enforced, the process runs as the node's user),
scheduling fields (nodeSelector, affinity, tolerations, topologySpreadConstraints, priority...),
DNS fields (there is no cluster DNS), serviceAccountName (its token is mounted, see
pod_volumes.py), imagePullSecrets, hostname and subdomain (they only name the pod in /etc/hosts).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.support.pod_env import RESOURCES, Placement, container_env, expand, supports_field
from tests.support.pod_references import PodObjects
from tests.support.pod_volumes import PROJECTED_SOURCES, READ_ONLY_TYPES, VOLUME_TYPES, volume_type


class UnsupportedPod(ValueError):
    """This pod cannot run on the local node; the message says why."""


@dataclass(frozen=True)
class Probe:
    port: int
    path: str | None  # None: a TCP connect; else an HTTP GET of this path
    initial_delay_s: float = 0
    period_s: float = 10
    timeout_s: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Mount:
    volume: str
    sub_path: str  # "" for the whole volume
    path: str  # the mountPath, in the pod
    read_only: bool


@dataclass(frozen=True)
class Launch:
    argv: list[str]  # as the pod sees it; pod_sandbox.py wraps it
    env: dict[str, str]  # the container's variables; the node adds its own environment beneath
    working_dir: str
    mounts: tuple[Mount, ...]
    readiness: Probe | None
    liveness: Probe | None
    startup: Probe | None
    restart_policy: str  # Always, OnFailure, Never
    grace_s: float  # terminationGracePeriodSeconds


# Pod fields this module reads, or that change nothing for a local process; a pod with any other
# field set (initContainers, hostNetwork, runtimeClassName, readinessGates...) is refused.
_ACCEPTED_POD_FIELDS = {
    "containers",
    "volumes",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "nodeName",
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "schedulerName",
    "priority",
    "priorityClassName",
    "preemptionPolicy",
    "dnsPolicy",
    "dnsConfig",
    "enableServiceLinks",
    "securityContext",
    "serviceAccount",
    "serviceAccountName",
    "automountServiceAccountToken",
    "imagePullSecrets",
    "hostname",
    "subdomain",
    "setHostnameAsFQDN",
    "os",
    "hostUsers",
}
_REFUSED_CONTAINER_FIELDS = ("lifecycle", "volumeDevices")
_ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")


def check_supported(pod: Mapping[str, Any], executables: Mapping[str, str]) -> None:
    """UnsupportedPod, naming the first thing this node cannot do for the pod."""
    spec = pod["spec"]
    unknown = sorted(
        key for key, value in spec.items() if value not in (None, False, "", [], {}) and key not in _ACCEPTED_POD_FIELDS
    )
    if unknown:
        raise UnsupportedPod(f"the local node does not run pods with {', '.join(unknown)}")
    if len(spec["containers"]) != 1:
        raise UnsupportedPod("the local node runs pods of exactly one container")
    container = spec["containers"][0]
    for field in _REFUSED_CONTAINER_FIELDS:
        if container.get(field):
            raise UnsupportedPod(f"the local node does not support container.{field}")
    command = container.get("command") or []
    if not command or command[0] not in executables:
        allowed = ", ".join(f"`{name}`" for name in executables)
        raise UnsupportedPod(
            f"the local node runs only commands starting with {allowed} (as local processes), not "
            f"{command or 'the image entrypoint'}"
        )
    for volume in spec.get("volumes") or []:
        _check_volume(volume)
    for variable in container.get("env") or []:
        _check_env_source(variable["name"], variable.get("valueFrom"))
    for source in container.get("envFrom") or []:
        if not ({"configMapRef", "secretRef"} & set(source)):
            raise UnsupportedPod(f"envFrom: the local node supports configMapRef and secretRef, not {sorted(source)}")
    ports = _named_ports(container)
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        _probe(container.get(kind), ports)


def launch_of(
    pod: Mapping[str, Any], placement: Placement, objects: PodObjects, executables: Mapping[str, str]
) -> Launch:
    """The process to run; UnsupportedPod, or MissingReference while a ConfigMap, Secret or key
    it needs is not there."""
    check_supported(pod, executables)
    spec = pod["spec"]
    container = spec["containers"][0]
    env = container_env(pod, container, objects, placement)
    command = container["command"]
    ports = _named_ports(container)
    return Launch(
        argv=[executables[command[0]]] + [expand(part, env) for part in command[1:] + (container.get("args") or [])],
        env=env,
        working_dir=container.get("workingDir") or "/",
        mounts=tuple(_mount(mount, spec, env) for mount in container.get("volumeMounts") or []),
        readiness=_probe(container.get("readinessProbe"), ports),
        liveness=_probe(container.get("livenessProbe"), ports),
        startup=_probe(container.get("startupProbe"), ports),
        restart_policy=spec.get("restartPolicy", "Always"),
        grace_s=spec.get("terminationGracePeriodSeconds", 30),
    )


def _check_volume(volume: Mapping[str, Any]) -> None:
    kind = volume_type(volume)
    if kind not in VOLUME_TYPES:
        raise UnsupportedPod(
            f"volume {volume['name']}: the local node supports {', '.join(VOLUME_TYPES)} volumes, not {kind}"
        )
    sources = [volume[kind] or {}]
    if kind == "projected":
        sources = []
        for projection in volume[kind].get("sources") or []:
            source_kind = next(iter(projection), "")
            if source_kind not in PROJECTED_SOURCES:
                raise UnsupportedPod(
                    f"volume {volume['name']}: the local node supports projected "
                    f"{', '.join(PROJECTED_SOURCES)}, not {source_kind}"
                )
            sources.append(projection[source_kind])
    for source in sources:
        for item in source.get("items") or []:
            path = (item.get("fieldRef") or {}).get("fieldPath")
            if path is not None and not supports_field(path, volume=True):
                raise UnsupportedPod(f"volume {volume['name']}: the local node does not support fieldRef {path}")
            resource = (item.get("resourceFieldRef") or {}).get("resource")
            if resource is not None and resource not in RESOURCES:
                raise UnsupportedPod(
                    f"volume {volume['name']}: the local node supports resourceFieldRef of "
                    f"{', '.join(RESOURCES)}, not {resource}"
                )


def _check_env_source(name: str, source: Mapping[str, Any] | None) -> None:
    if source is None:
        return
    kind = next((key for key in _ENV_SOURCES if key in source), None)
    if kind is None:
        raise UnsupportedPod(
            f"env {name}: the local node supports valueFrom {', '.join(_ENV_SOURCES)}, not {sorted(source)}"
        )
    if kind == "fieldRef" and not supports_field(source[kind]["fieldPath"], volume=False):
        raise UnsupportedPod(f"env {name}: the local node does not support fieldRef {source[kind]['fieldPath']}")
    if kind == "resourceFieldRef" and source[kind]["resource"] not in RESOURCES:
        raise UnsupportedPod(
            f"env {name}: the local node supports resourceFieldRef of {', '.join(RESOURCES)}, not "
            f"{source[kind]['resource']}"
        )


def _mount(mount: Mapping[str, Any], spec: Mapping[str, Any], env: Mapping[str, str]) -> Mount:
    volume = next(v for v in spec.get("volumes") or [] if v["name"] == mount["name"])
    sub_path = mount.get("subPath") or expand(mount.get("subPathExpr") or "", env)
    read_only = bool(mount.get("readOnly")) or volume_type(volume) in READ_ONLY_TYPES
    return Mount(volume=mount["name"], sub_path=sub_path, path=mount["mountPath"], read_only=read_only)


def _named_ports(container: Mapping[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container.get("ports") or [] if port.get("name")}


def _probe(probe: Mapping[str, Any] | None, ports: Mapping[str, int]) -> Probe | None:
    if probe is None:
        return None
    headers: tuple[tuple[str, str], ...] = ()
    if "httpGet" in probe:
        action = probe["httpGet"]
        if action.get("scheme", "HTTP") != "HTTP":
            raise UnsupportedPod("the local node probes over plain HTTP only")
        path = action.get("path", "/")
        headers = tuple((header["name"], header["value"]) for header in action.get("httpHeaders") or [])
    elif "tcpSocket" in probe:
        action, path = probe["tcpSocket"], None
    else:
        kind = next((key for key in ("exec", "grpc") if key in probe), "no action")
        raise UnsupportedPod(f"the local node supports httpGet and tcpSocket probes, not {kind}")
    port = action["port"]
    if isinstance(port, str) and not port.isdigit():
        if port not in ports:
            raise UnsupportedPod(f"probe port {port!r} names no container port")
        port = ports[port]
    return Probe(
        port=int(port),
        path=path,
        initial_delay_s=probe.get("initialDelaySeconds", 0),
        period_s=probe.get("periodSeconds", 10),
        timeout_s=probe.get("timeoutSeconds", 1),
        success_threshold=probe.get("successThreshold", 1),
        failure_threshold=probe.get("failureThreshold", 3),
        headers=headers,
    )
