"""What a pod refers to outside itself: the ConfigMaps and Secrets that its env and volumes read,
and the service-account tokens that its projected volumes hold. The node fetches them (as the
node's own identity, which the Node authorizer allows for pods bound to it) into PodObjects;
pod_env.py and pod_volumes.py read them from there (pure)."""

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TOKEN_EXPIRATION_S = 3600  # the API's default for serviceAccountToken.expirationSeconds


class MissingReference(Exception):
    """A ConfigMap, Secret, key or token the pod needs is not there (yet): the kubelet keeps such
    a pod waiting with this reason, and tries again."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # CreateContainerConfigError (env) or ContainerCreating (volumes)


@dataclass(frozen=True)
class TokenSpec:
    audiences: tuple[str, ...]  # () for the API server's own
    expiration_s: int


@dataclass(frozen=True)
class References:
    config_maps: frozenset[str] = frozenset()
    secrets: frozenset[str] = frozenset()
    tokens: frozenset[TokenSpec] = frozenset()


@dataclass(frozen=True)
class PodObjects:
    """What the node fetched for one pod: the data of the ConfigMaps and Secrets found (by name;
    values decoded), and the tokens."""

    config_maps: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    tokens: Mapping[TokenSpec, str] = field(default_factory=dict)

    def data(self, kind: str, name: str, *, optional: bool, reason: str) -> Mapping[str, bytes]:
        """A ConfigMap's (kind `configmap`) or Secret's (`secret`) data; {} when it is missing and
        optional; MissingReference when it is missing and required."""
        found = (self.config_maps if kind == "configmap" else self.secrets).get(name)
        if found is not None:
            return found
        if optional:
            return {}
        raise MissingReference(reason, f'{kind} "{name}" not found')

    def token(self, spec: TokenSpec) -> str:
        if spec not in self.tokens:
            raise MissingReference("ContainerCreating", "service account token not issued yet")
        return self.tokens[spec]


def references(pod: Mapping[str, Any]) -> References:
    config_maps: set[str] = set()
    secrets: set[str] = set()
    tokens: set[TokenSpec] = set()
    for container in pod["spec"]["containers"]:
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                config_maps.add(source["configMapRef"]["name"])
            if "secretRef" in source:
                secrets.add(source["secretRef"]["name"])
        for variable in container.get("env") or []:
            value_from = variable.get("valueFrom") or {}
            if "configMapKeyRef" in value_from:
                config_maps.add(value_from["configMapKeyRef"]["name"])
            if "secretKeyRef" in value_from:
                secrets.add(value_from["secretKeyRef"]["name"])
    for source in _volume_sources(pod):
        if "configMap" in source:
            config_maps.add(source["configMap"]["name"])
        if "secret" in source:
            secrets.add(source["secret"].get("secretName") or source["secret"]["name"])
        if "serviceAccountToken" in source:
            tokens.add(token_spec(source["serviceAccountToken"]))
    return References(frozenset(config_maps), frozenset(secrets), frozenset(tokens))


def token_spec(source: Mapping[str, Any]) -> TokenSpec:
    audience = source.get("audience")
    return TokenSpec((audience,) if audience else (), source.get("expirationSeconds", DEFAULT_TOKEN_EXPIRATION_S))


def config_map_data(config_map: Mapping[str, Any]) -> dict[str, bytes]:
    data = {key: value.encode() for key, value in (config_map.get("data") or {}).items()}
    return data | {key: base64.b64decode(value) for key, value in (config_map.get("binaryData") or {}).items()}


def secret_data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}


def _volume_sources(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Each volume, and each source of a projected one (a Secret volume names its Secret
    `secretName`, a projected source `name`)."""
    for volume in pod["spec"].get("volumes") or []:
        yield volume
        yield from (volume.get("projected") or {}).get("sources") or []
