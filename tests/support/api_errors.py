"""The errors the emulated API server answers with: Kubernetes `Status` objects with the reasons
clients act on (NotFound, AlreadyExists, Conflict, Invalid...), raised as kmock's KubernetesError
so that kmock renders them."""

from typing import Any, NamedTuple

from kmock import KubernetesError, resource


class FieldError(NamedTuple):
    """One reason an object is invalid, as a validation hook reports it. Only the attributes are
    read, so any object with them will do (tests/support/crd_schema.py's FieldError, say)."""

    field: str  # e.g. spec.replicas
    message: str  # e.g. Invalid value: -1: must be >= 0
    reason: str = "FieldValueInvalid"  # the StatusCause reason


def status_error(code: int, reason: str, message: str, **details: Any) -> KubernetesError:
    # Without details, kmock would put a traceback there.
    return KubernetesError(status=code, reason=reason, message=message, details=details or {"causes": []})


def not_found(res: resource, name: str) -> KubernetesError:
    return status_error(404, "NotFound", f'{res.plural}{dot(res.group)} "{name}" not found', name=name, group=res.group, kind=res.plural)


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> KubernetesError:
    """422 as admission answers it: `<Kind>.<group> "<name>" is invalid: <field>: <message>`."""
    reasons = [f"{error.field}: {error.message}" if error.field else error.message for error in errors]
    summary = reasons[0] if len(reasons) == 1 else f"[{', '.join(reasons)}]"
    causes = [{"reason": error.reason, "message": error.message, "field": error.field} for error in errors]
    return status_error(422, "Invalid", f'{kind}{dot(group)} "{name}" is invalid: {summary}', name=name, group=group, kind=kind, causes=causes)


def failure_status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A Status as a watch sends it in an ERROR event."""
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "reason": reason, "message": message, "code": code}


def dot(group: str) -> str:
    """`.shoal.dev` for a group, nothing for the core group: as names like modelpools.shoal.dev."""
    return f".{group}" if group else ""
