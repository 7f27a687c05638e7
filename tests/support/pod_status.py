"""The pod status the local node reports, as a kubelet writes it (pure). It goes to the API as a
merge patch of pods/<name>/status: keys it leaves out stay as they are (status.qosClass belongs to
the API server), but lists are replaced whole, so `conditions` carries the scheduler's
PodScheduled condition along with the node's own."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REFUSED_REASON = "UnsupportedByLocalNode"


@dataclass
class PodState:
    """What the node knows of one pod; pod_status() turns it into the API's PodStatus."""

    pod_ip: str
    host_ip: str
    start_time: str
    container: str
    image: str
    scheduled: Mapping[str, Any] | None  # the scheduler's PodScheduled condition, kept as it is
    phase: str = "Pending"
    started: bool = False
    ready: bool = False
    ready_since: str = ""
    restart_count: int = 0
    container_id: str = ""  # local-process://<pid> of the running process
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)


def scheduled_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"), None)


def pod_status(state: PodState) -> dict[str, Any]:
    ready = "True" if state.ready else "False"
    since = state.ready_since or state.start_time
    not_ready = (
        {}
        if state.ready
        else {
            "reason": "PodCompleted" if state.phase in ("Succeeded", "Failed") else "ContainersNotReady",
            "message": f"containers with unready status: [{state.container}]",
        }
    )
    conditions = [
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": state.start_time},
        {"type": "Initialized", "status": "True", "lastTransitionTime": state.start_time},
        {"type": "Ready", "status": ready, "lastTransitionTime": since, **not_ready},
        {"type": "ContainersReady", "status": ready, "lastTransitionTime": since, **not_ready},
    ]
    if state.scheduled is not None:
        conditions.append(dict(state.scheduled))
    return {
        "phase": state.phase,
        "hostIP": state.host_ip,
        "hostIPs": [{"ip": state.host_ip}],
        "podIP": state.pod_ip,
        "podIPs": [{"ip": state.pod_ip}],
        "startTime": state.start_time,
        "conditions": conditions,
        "containerStatuses": [
            {
                "name": state.container,
                "image": state.image,
                "imageID": "",
                "ready": state.ready,
                "started": state.started,
                "restartCount": state.restart_count,
                **({"containerID": state.container_id} if state.container_id else {}),
                "state": state.state,
                "lastState": state.last_state,
            }
        ],
    }


def refused_status(message: str) -> dict[str, Any]:
    """The status of a pod that this node cannot run (pod_launch.UnsupportedPod): Failed, as the
    kubelet reports a pod it rejects at admission."""
    return {"phase": "Failed", "reason": REFUSED_REASON, "message": message}


def exit_code(returncode: int) -> int:
    """As a container runtime reports it: a process killed by signal N exits 128+N."""
    return returncode if returncode >= 0 else 128 - returncode
