"""What the local node runs for a pod: its one container as a local process (argv, env, probes,
restart policy), worked out as the kubelet would, or the reason this node cannot run it.

Supported: one container whose command starts with `shoal` (run as this venv's `shoal`), args and
env with $(VAR) references, env from `value` or a fieldRef, named or numbered container ports,
httpGet and tcpSocket probes. Anything else (images' own entrypoints, volumes, init containers,
envFrom, secrets, exec or grpc probes) is refused, and the node reports the pod Failed.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]  # the container's own variables; the node adds its environment beneath
    readiness: Probe | None
    liveness: Probe | None
    startup: Probe | None
    restart_policy: str  # Always, OnFailure, Never
    grace_s: float  # terminationGracePeriodSeconds


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "status.podIP", "status.hostIP")
# Pod fields this module reads, or that change nothing for a local process (scheduling, DNS,
# identity); a pod with any other field (volumes, initContainers, hostNetwork...) is refused.
_ACCEPTED_POD_FIELDS = {
    "containers", "restartPolicy", "terminationGracePeriodSeconds", "nodeName", "nodeSelector",
    "tolerations", "affinity", "topologySpreadConstraints", "schedulerName", "priority",
    "priorityClassName", "dnsPolicy", "enableServiceLinks", "securityContext", "serviceAccount",
    "serviceAccountName", "automountServiceAccountToken", "imagePullSecrets",
}  # fmt: skip


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's $(VAR) expansion: a defined VAR is replaced, an undefined one stays as
    written, and $$ stands for a literal $."""
    return _REFERENCE.sub(lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), text)


def launch_of(pod: Mapping[str, Any], *, pod_ip: str, host_ip: str, node_name: str, shoal_executable: str) -> Launch:
    spec = pod["spec"]
    unknown = set(spec) - _ACCEPTED_POD_FIELDS
    if unknown:
        raise UnsupportedPod(f"the local node does not run pods with {', '.join(sorted(unknown))}")
    if len(spec["containers"]) != 1:
        raise UnsupportedPod("the local node runs pods of exactly one container")
    container = spec["containers"][0]
    for field in ("volumeMounts", "envFrom", "lifecycle", "workingDir"):
        if container.get(field):
            raise UnsupportedPod(f"the local node does not support container.{field}")
    command = container.get("command") or []
    if not command or command[0] != "shoal":
        raise UnsupportedPod(f"the local node runs only `shoal ...` commands, not {command or 'the image entrypoint'}")
    fields = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"].get("namespace", ""),
        "metadata.uid": pod["metadata"].get("uid", ""),
        "spec.nodeName": node_name,
        "status.podIP": pod_ip,
        "status.hostIP": host_ip,
    }
    env: dict[str, str] = {}
    for variable in container.get("env") or []:
        env[variable["name"]] = _env_value(variable, env, fields)
    argv = [shoal_executable] + [expand(part, env) for part in command[1:] + (container.get("args") or [])]
    ports = {port["name"]: port["containerPort"] for port in container.get("ports") or [] if port.get("name")}
    return Launch(
        argv=argv,
        env=env,
        readiness=_probe(container.get("readinessProbe"), ports),
        liveness=_probe(container.get("livenessProbe"), ports),
        startup=_probe(container.get("startupProbe"), ports),
        restart_policy=spec.get("restartPolicy", "Always"),
        grace_s=spec.get("terminationGracePeriodSeconds", 30),
    )


def _env_value(variable: Mapping[str, Any], env: Mapping[str, str], fields: Mapping[str, str]) -> str:
    if "valueFrom" not in variable:
        return expand(variable.get("value", ""), env)  # may refer to variables defined above it
    source = variable["valueFrom"]
    field_path = (source.get("fieldRef") or {}).get("fieldPath")
    if set(source) != {"fieldRef"} or field_path not in _FIELD_PATHS:
        raise UnsupportedPod(f"env {variable['name']}: the local node supports valueFrom.fieldRef of {', '.join(_FIELD_PATHS)} only")
    return fields[field_path]


def _probe(probe: Mapping[str, Any] | None, ports: Mapping[str, int]) -> Probe | None:
    if probe is None:
        return None
    if "httpGet" in probe:
        action = probe["httpGet"]
        if action.get("scheme", "HTTP") != "HTTP":
            raise UnsupportedPod("the local node probes over plain HTTP only")
        path = action.get("path", "/")
    elif "tcpSocket" in probe:
        action, path = probe["tcpSocket"], None
    else:
        raise UnsupportedPod(f"the local node supports httpGet and tcpSocket probes, not {sorted(probe)}")
    port = action["port"]
    if isinstance(port, str):
        if port not in ports:
            raise UnsupportedPod(f"probe port {port!r} names no container port")
        port = ports[port]
    return Probe(
        port=port,
        path=path,
        initial_delay_s=probe.get("initialDelaySeconds", 0),
        period_s=probe.get("periodSeconds", 10),
        timeout_s=probe.get("timeoutSeconds", 1),
        success_threshold=probe.get("successThreshold", 1),
        failure_threshold=probe.get("failureThreshold", 3),
    )
