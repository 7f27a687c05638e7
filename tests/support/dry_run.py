"""Manifests judged by the real API server without storing anything: `kubectl apply
--dry-run=server --validate=strict`. An accepted object comes back as the server would store it
(defaults applied); a refused one gives kubectl's error, which names the fields at fault.

    dry_run = ServerDryRun(plane.admin_kubeconfig, "some-namespace")
    (stored,) = dry_run.apply(pool)
    assert fields_named(dry_run.refusal(bad_pool)) == {"spec.replicas"}
"""

import copy
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

# A 422's causes as kubectl prints them: `... is invalid: spec.x: <message>` for one, a `* spec.x:
# <message>` line each for several. `<nil>` is the note that CEL rules were skipped.
_CAUSE = re.compile(r"(?:is invalid: |^\* )(\S+?): ", re.MULTILINE)
# Strict decoding (a 400): `strict decoding error: unknown field "spec.gpus", unknown field ...`.
_UNKNOWN_FIELD = re.compile(r'unknown field "([^"]+)"')


@dataclass(frozen=True)
class ServerDryRun:
    kubeconfig: Path
    namespace: str  # namespaced objects are judged here, whatever namespace they name (it need not exist)

    def apply(self, *manifests: dict) -> list[dict]:
        """The objects as the server would store them, in order; AssertionError with kubectl's
        message if it refuses any."""
        result = self._kubectl_apply(manifests)
        if result.returncode != 0:
            raise AssertionError(f"the API server refused it:\n{result.stderr}")
        stored = json.loads(result.stdout)
        return stored["items"] if stored["kind"] == "List" else [stored]

    def refusal(self, manifest: dict) -> str:
        """kubectl's error for a manifest the server must refuse; AssertionError if it accepts it."""
        result = self._kubectl_apply((manifest,))
        if result.returncode == 0:
            raise AssertionError(f"the API server accepted it:\n{result.stdout}")
        return result.stderr

    def _kubectl_apply(self, manifests: tuple[dict, ...]) -> subprocess.CompletedProcess:
        items = [copy.deepcopy(manifest) for manifest in manifests]
        for item in items:
            item.get("metadata", {}).pop("namespace", None)
        # One document each, not a v1 List: kubectl would judge a List's items itself, client side.
        documents = "".join(f"---\n{json.dumps(item)}\n" for item in items)
        command = [
            "kubectl",
            "--kubeconfig",
            str(self.kubeconfig),
            "apply",
            "--dry-run=server",
            "--validate=strict",
            "--namespace",
            self.namespace,
            "--output",
            "json",
            "--filename",
            "-",
        ]
        return subprocess.run(command, input=documents, capture_output=True, text=True, timeout=60)


def fields_named(refusal: str) -> set[str]:
    """The field paths a refusal names (`spec.replicas`, `spec.rollout.steps[0].weight`)."""
    causes = {field.removeprefix(".") for field in _CAUSE.findall(refusal)} - {"<nil>"}
    return causes | set(_UNKNOWN_FIELD.findall(refusal))
