"""Which object a Kubernetes API URL names, and the URLs of objects.

kmock's own parser reads `/api/v1/namespaces/x` as "namespace x, no resource", so it cannot
address Namespace objects; this one knows that `namespaces` is also a resource.
"""

from dataclasses import dataclass

# The subresources of a Namespace; anything else under /namespaces/<ns>/ is a resource in it.
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass(frozen=True)
class ApiPath:
    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath | None:
    """The object or collection a path names; None for discovery and other non-resource paths."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    plural, name, subresource = (rest + [None, None])[:3]
    return ApiPath(group, version, plural, namespace, name, subresource)


def api_version_of(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def object_path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
    """`v1`, `pods`, `default`, `x` -> /api/v1/namespaces/default/pods/x."""
    parts = ["api" if "/" not in api_version else "apis", api_version]
    if namespace is not None:
        parts += ["namespaces", namespace]
    parts += [part for part in (plural, name, subresource) if part is not None]
    return "/" + "/".join(parts)
