"""Where a pod's process starts: honestly, a process with its own network and mount namespaces,
nothing more (no image, no cgroup, no user namespace). `ip netns exec <netns>` puts it in the
pod's network namespace (pod_network.py) and in a private mount namespace; there a short bash
script bind-mounts each volume (or its subPath) at its mountPath, read-only where asked, and the
pod's own /etc/hosts and /etc/resolv.conf, changes to the working folder and execs the command.
The exec keeps the pid, so the node signals and waits for the container's process itself.

The node's own software stays where it is, even under a mount above it (kept_in_view).

Mount paths are the pod's own (/etc/shoal/config, /var/run/secrets/kubernetes.io/serviceaccount,
/tmp for an emptyDir there...) and only the pod sees what is mounted there: the mounts never
propagate to the host. Underneath, though, it is the host's file system, so a missing mount point
is created (an empty folder, or an empty file for a file subPath): on the host, and left there
empty, unless an earlier mount of the pod covers that path. The script opens every source before
the first mount and mounts it through its descriptor, since a mount may cover the node's own
folders (an emptyDir at /tmp, say, over a node whose state lives under /tmp).

The pod's /etc/resolv.conf points at its own loopback: there is no cluster DNS, a lookup fails at
once, and names resolve through /etc/hosts only: localhost, the pod's own hostname, and the
`kubernetes` Service's names (kubernetes.default.svc...: kopf's in-cluster login uses that name,
not KUBERNETES_SERVICE_HOST), which lead to the API proxy on the gateway.
"""

import dataclasses
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.pod_launch import Mount
from tests.support.pod_network import IP

MOUNT = shutil.which("mount") or "/bin/mount"
BASH = shutil.which("bash") or "/bin/bash"
API_SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
RESOLV_CONF = (
    "# The local node has no cluster DNS: names resolve through /etc/hosts only.\n"
    "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n"
)


@dataclass(frozen=True)
class BindMount:
    source: Path  # on the host
    target: str  # in the pod
    read_only: bool
    file: bool = False  # a file (a subPath, /etc/hosts), else a folder: the mount point must match


def bind_mounts(mounts: Sequence[Mount], volumes_dir: Path, etc_dir: Path) -> list[BindMount]:
    """The pod's mounts, parents before their children (a volume at /a, another at /a/b), then
    its /etc files."""
    binds = [
        BindMount(
            volumes_dir / mount.volume / mount.sub_path if mount.sub_path else volumes_dir / mount.volume,
            mount.path,
            mount.read_only,
        )
        for mount in mounts
    ]
    binds.sort(key=lambda bind: len(Path(bind.target).parts))
    return binds + [
        BindMount(etc_dir / name, f"/etc/{name}", read_only=False, file=True) for name in ("hosts", "resolv.conf")
    ]


def kept_in_view(mounts: Sequence[BindMount], software: Sequence[Path]) -> list[BindMount]:
    """The node's own software folders (this checkout, its venv, Python's installation, the model
    cache) that one of the pod's mounts would hide, bound back at their own paths after the pod's
    mounts: they are what an image would hold, and an emptyDir at /tmp must not take away a
    checkout that lives under /tmp (as CI's fresh clone may)."""
    return [
        BindMount(folder, str(folder), read_only=False)
        for folder in software
        if any(folder.is_relative_to(bind.target) for bind in mounts)
    ]


def sandbox_argv(netns: str, mounts: Sequence[BindMount], working_dir: str, argv: Sequence[str]) -> list[str]:
    """The command line that runs `argv` inside the pod."""
    fds = [f"m{index}" for index in range(len(mounts))]  # bash picks the numbers
    script = ["set -e"]
    if mounts:
        script.append(
            "exec "
            + " ".join(f"{{{fd}}}<{shlex.quote(str(bind.source))}" for fd, bind in zip(fds, mounts, strict=True))
        )
    for fd, bind in zip(fds, mounts, strict=True):
        target = shlex.quote(bind.target)
        if bind.file:
            script.append(
                f"[ -e {target} ] || {{ mkdir -p -- {shlex.quote(str(Path(bind.target).parent))}; : > {target}; }}"
            )
        else:
            script.append(f"mkdir -p -- {target}")
        # -c: mount the descriptor's file itself, not the path it was opened by
        script.append(f"{MOUNT} -c --bind /proc/self/fd/${fd} {target}")
        if bind.read_only:
            script.append(f"{MOUNT} -c -o remount,bind,ro {target}")
    if mounts:
        script.append("exec " + " ".join(f"{{{fd}}}<&-" for fd in fds))
    script += [f"cd -- {shlex.quote(working_dir)}", 'exec "$@"']
    return [IP, "netns", "exec", netns, BASH, "-c", "\n".join(script), "pod", *argv]


def etc_files(*, hostname: str, pod_ip: str, namespace: str, api_host: str, subdomain: str = "") -> dict[str, str]:
    """The pod's /etc/hosts (as the kubelet writes it, plus the `kubernetes` Service's names at
    api_host) and /etc/resolv.conf."""
    names = f"{hostname}.{subdomain}.{namespace}.svc.cluster.local\t{hostname}" if subdomain else hostname
    hosts = (
        "# Kubernetes-managed hosts file (the local node's).\n"
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
        f"{pod_ip}\t{names}\n"
        f"{api_host}\t{' '.join(API_SERVICE_NAMES)}\n"
    )
    return {"hosts": hosts, "resolv.conf": RESOLV_CONF}


def write_etc(etc_dir: Path, files: Mapping[str, str]) -> None:
    etc_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (etc_dir / name).write_text(text)


def prepare_sources(mounts: Sequence[BindMount]) -> list[BindMount]:
    """The mounts, each marked a file or a folder as its source is; a subPath folder that the
    volume lacks is created first (as the kubelet does)."""
    for bind in mounts:
        if not bind.source.exists():
            bind.source.mkdir(parents=True)
    return [dataclasses.replace(bind, file=not bind.source.is_dir()) for bind in mounts]
