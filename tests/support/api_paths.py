"""The URLs of Kubernetes objects."""


def object_path(
    api_version: str, plural: str, namespace: str | None = None, name: str | None = None, subresource: str | None = None
) -> str:
    """`v1`, `pods`, `default`, `x` -> /api/v1/namespaces/default/pods/x."""
    parts = ["api" if "/" not in api_version else "apis", api_version]
    if namespace is not None:
        parts += ["namespaces", namespace]
    parts += [part for part in (plural, name, subresource) if part is not None]
    return "/" + "/".join(parts)
