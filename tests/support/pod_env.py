"""A container's environment, built as the kubelet builds it (pure): first the `kubernetes`
Service's variables (KUBERNETES_SERVICE_HOST...: where the pod reaches the API server), then
envFrom (ConfigMaps and Secrets, with an optional prefix), then env, each value seeing the
variables above it in $(VAR) references; values from a ConfigMap or Secret key, a field of the pod
(fieldRef) or a resource of a container (resourceFieldRef). Also the field paths and resources
that downward-API volumes read (pod_volumes.py).

Not here: the variables of the namespace's other Services (enableServiceLinks): nothing on the
local node would route their cluster IPs."""

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tests.support.pod_references import MissingReference, PodObjects


@dataclass(frozen=True)
class Placement:
    """Where a pod runs: what its fieldRefs and resourceFieldRefs read besides the pod itself."""

    node_name: str
    host_ip: str
    pod_ip: str
    api_host: str  # where pods reach the API server (the `kubernetes` Service, api_proxy.py)
    api_port: int
    allocatable: Mapping[str, str]  # a container without a limit gets the node's allocatable


ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.podIP",
    "status.podIPs",
    "status.hostIP",
    "status.hostIPs",
)
VOLUME_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations")
RESOURCES = tuple(
    f"{kind}.{name}" for kind in ("limits", "requests") for name in ("cpu", "memory", "ephemeral-storage")
)

_KEYED_FIELD = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?")
_SUFFIXES = {
    None: Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}


def expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's $(VAR) expansion: a defined VAR is replaced, an undefined one stays as
    written, and $$ stands for a literal $."""
    return _REFERENCE.sub(lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), text)


def supports_field(path: str, *, volume: bool) -> bool:
    return path in (VOLUME_FIELD_PATHS if volume else ENV_FIELD_PATHS) or _KEYED_FIELD.fullmatch(path) is not None


def service_env(host: str, port: int) -> dict[str, str]:
    """The `kubernetes` Service's variables, which the kubelet gives every container."""
    url = f"tcp://{host}:{port}"
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": url,
        f"KUBERNETES_PORT_{port}_TCP": url,
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
        f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
    }


def container_env(
    pod: Mapping[str, Any], container: Mapping[str, Any], objects: PodObjects, placement: Placement
) -> dict[str, str]:
    """MissingReference when a required ConfigMap, Secret or key is not there."""
    env = service_env(placement.api_host, placement.api_port)
    for source in container.get("envFrom") or []:
        kind, ref = (
            ("configmap", source["configMapRef"]) if "configMapRef" in source else ("secret", source["secretRef"])
        )
        data = objects.data(kind, ref["name"], optional=ref.get("optional", False), reason="CreateContainerConfigError")
        env |= {source.get("prefix", "") + key: value.decode(errors="replace") for key, value in data.items()}
    for variable in container.get("env") or []:
        value = _value(variable, env, pod, container, objects, placement)
        if value is not None:
            env[variable["name"]] = value
    return env


def field_value(pod: Mapping[str, Any], path: str, placement: Placement) -> str:
    """A fieldRef's value; labels and annotations as a downward-API file holds them (key="value"
    lines, sorted)."""
    metadata = pod["metadata"]
    keyed = _KEYED_FIELD.fullmatch(path)
    if keyed:
        return (metadata.get(keyed[1]) or {}).get(keyed[2], "")
    if path in ("metadata.labels", "metadata.annotations"):
        pairs = sorted((metadata.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{key}="{_go_quoted(value)}"' for key, value in pairs)
    values = {
        "metadata.name": metadata["name"],
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": placement.node_name,
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": placement.pod_ip,
        "status.podIPs": placement.pod_ip,
        "status.hostIP": placement.host_ip,
        "status.hostIPs": placement.host_ip,
    }
    return values[path]


def resource_value(
    pod: Mapping[str, Any], container_name: str, resource: str, divisor: str | int, placement: Placement
) -> str:
    """A resourceFieldRef's value: the limit (else the node's allocatable) or the request (else 0),
    in units of the divisor, rounded up, as the kubelet reports it."""
    container = next((c for c in pod["spec"]["containers"] if c["name"] == container_name), None)
    if container is None:
        raise MissingReference("CreateContainerConfigError", f"resourceFieldRef: no container {container_name!r}")
    kind, name = resource.split(".", 1)
    value = ((container.get("resources") or {}).get(kind) or {}).get(name)
    if value is None:
        value = placement.allocatable.get(name, "0") if kind == "limits" else "0"
    return str(math.ceil(quantity(value) / quantity(divisor or "1")))


def quantity(text: str | int | float) -> Fraction:
    """A Kubernetes quantity (`500m`, `1Gi`, `2`, `1e3`) as an exact number."""
    match = _QUANTITY.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number = Fraction(match[1])
    return number * Fraction(10) ** int(match[2]) if match[2] else number * _SUFFIXES[match[3]]


def _value(
    variable: Mapping[str, Any],
    env: Mapping[str, str],
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    objects: PodObjects,
    placement: Placement,
) -> str | None:
    """The variable's value; None to leave it out (an optional reference that is missing)."""
    source = variable.get("valueFrom")
    if source is None:
        return expand(variable.get("value", ""), env)  # may refer to variables defined above it
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"], placement)
    if "resourceFieldRef" in source:
        ref = source["resourceFieldRef"]
        return resource_value(
            pod, ref.get("containerName") or container["name"], ref["resource"], ref.get("divisor", "1"), placement
        )
    kind, ref = (
        ("configmap", source["configMapKeyRef"]) if "configMapKeyRef" in source else ("secret", source["secretKeyRef"])
    )
    optional = ref.get("optional", False)
    data = objects.data(kind, ref["name"], optional=optional, reason="CreateContainerConfigError")
    if ref["key"] in data:
        return data[ref["key"]].decode(errors="replace")
    if optional:
        return None
    raise MissingReference("CreateContainerConfigError", f'couldn\'t find key {ref["key"]} in {kind} "{ref["name"]}"')


def _go_quoted(value: str) -> str:
    """The inside of Go's strconv.Quote (which the kubelet uses), close enough for label values."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
