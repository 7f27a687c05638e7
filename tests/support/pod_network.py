"""The local node's pod network: a Linux bridge holding the gateway address, and one network
namespace per pod joined to it by a veth pair. Every pod gets an address of its own (chart pods
bind 0.0.0.0 on fixed ports, so they cannot share one), and the host reaches each pod directly.

    bridge shbr<tag>, 10.213.0.1/24: the gateway (the Node's InternalIP; pods reach the API
      │                              server's proxy here, see api_proxy.py)
      ├── shv<tag><n> ══ veth ══ eth0 10.213.0.<n>/24 in netns shoal-<tag>-<n>, lo up,
      │                          default route via 10.213.0.1
      └── ...

<tag> is a hash of the pod CIDR, the one thing that no two nodes on a machine can share (their
gateways would clash): names stay within Linux's 15 characters for interfaces, and a crashed
earlier run's bridge, namespaces and the processes left in them are found and removed when the
next node on that CIDR starts. A lock file (/run/lock/shoal-pod-network-<tag>.lock, held while the
node runs) keeps a second node from taking over a CIDR in use. Test sessions side by side on one
machine each reserve a CIDR of their own (reserved_pod_network) before they start the API server
(whose certificate must name the gateway), and hand the held lock to their node.

Nothing is forwarded beyond the bridge (no NAT, no Service IPs, no cluster DNS): pods reach each
other, the gateway and their own loopback, and the host reaches the pods. Creating namespaces and
links needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
"""

import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import logging
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_POD_CIDR = "10.213.0.0/24"
IP = shutil.which("ip") or "/usr/sbin/ip"
LOCK_DIR = Path("/run/lock")

log = logging.getLogger(__name__)


class NetworkError(RuntimeError):
    """An `ip` command failed; the message holds its command line and stderr."""


@dataclass(frozen=True)
class NetworkNames:
    """The node's interface and namespace names, all derived from its pod CIDR."""

    tag: str

    @property
    def bridge(self) -> str:
        return f"shbr{self.tag}"

    @property
    def bridge_mac(self) -> str:
        # Set once, so the bridge keeps it: by default a bridge takes the lowest MAC of its ports,
        # which changes as pods come and go, and the pods' ARP entries for the gateway go stale.
        return "02:" + ":".join(self.tag[i : i + 2] for i in range(0, 6, 2)) + ":00:01"

    @property
    def netns_prefix(self) -> str:
        return f"shoal-{self.tag}-"

    @property
    def veth_prefix(self) -> str:
        return f"shv{self.tag}"

    def netns(self, offset: int) -> str:
        return f"{self.netns_prefix}{offset}"

    def veth(self, offset: int) -> str:
        return f"{self.veth_prefix}{offset:x}"  # <= 3 + 6 + 4 characters for a /16

    @property
    def lock_file(self) -> Path:
        return LOCK_DIR / f"shoal-pod-network-{self.tag}.lock"


def network_names(cidr: str) -> NetworkNames:
    return NetworkNames(hashlib.sha256(str(ipaddress.ip_network(cidr)).encode()).hexdigest()[:6])


def gateway_of(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr).network_address + 1)


@dataclass(frozen=True)
class Reservation:
    """A pod CIDR, and the open descriptor that holds its lock: pass it on to the node (as
    --pod-network-lock-fd, with the descriptor inherited), which then holds the same lock."""

    cidr: str
    lock_fd: int

    @property
    def gateway(self) -> str:
        return gateway_of(self.cidr)


@contextlib.contextmanager
def reserved_pod_network() -> Iterator[Reservation]:
    """The first of 10.213.0.0/24, 10.213.1.0/24... that nobody holds, held until the end."""
    for third in range(256):
        cidr = f"10.213.{third}.0/24"
        fd = _try_lock(network_names(cidr).lock_file)
        if fd is not None:
            try:
                yield Reservation(cidr, fd)
            finally:
                os.close(fd)
            return
    raise NetworkError("every pod CIDR of 10.213.0.0/16 is held by a running node or test session")


@dataclass(frozen=True)
class PodSandbox:
    """One pod's place on the network."""

    netns: str
    veth: str
    address: str
    offset: int  # the address's index in the pod CIDR


class AddressPool:
    """The pod CIDR's addresses after the gateway, handed out round-robin: a freed address is
    reused only after every other one, so a new pod does not answer at a deleted pod's address
    while clients (EndpointSlices, tests) may still hold it."""

    def __init__(self, cidr: str):
        self.network = ipaddress.ip_network(cidr)
        if self.network.num_addresses < 4:
            raise ValueError(f"--pod-cidr {cidr}: too small, leaves no address for a pod")
        self.gateway = gateway_of(cidr)
        # Offsets from the network address: 0 is the network, 1 the gateway, the last broadcast.
        self._first, self._count = 2, self.network.num_addresses - 3
        self._next = self._first
        self._taken: set[int] = set()

    def allocate(self) -> tuple[int, str]:
        """A free address (and its offset in the CIDR)."""
        for step in range(self._count):
            offset = self._first + (self._next - self._first + step) % self._count
            if offset not in self._taken:
                self._taken.add(offset)
                self._next = offset + 1
                return offset, str(self.network.network_address + offset)
        raise NetworkError(f"no free pod address left in {self.network}")

    def release(self, offset: int) -> None:
        self._taken.discard(offset)


class PodNetwork:
    """The bridge (setup/teardown) and the pods' namespaces (add/remove)."""

    def __init__(self, cidr: str, *, lock_fd: int | None = None):
        """lock_fd: the CIDR's lock, already held (a Reservation's, inherited); else the node
        takes it."""
        self.names = network_names(cidr)
        self._pool = AddressPool(cidr)
        self.gateway = self._pool.gateway
        self._prefix_length = self._pool.network.prefixlen
        self._given_lock = lock_fd
        self._lock: int | None = None

    async def setup(self) -> None:
        """Take the lock, remove what a crashed run of this node left, create the bridge."""
        if self._given_lock is not None:
            fcntl.flock(self._given_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: a no-op
            self._lock = self._given_lock
        else:
            self._lock = _try_lock(self.names.lock_file)
        if self._lock is None:
            raise NetworkError(
                f"another local node runs on pod CIDR {self._pool.network} ({self.names.lock_file} is locked): "
                "give this one another --pod-cidr"
            )
        await self._remove_leftovers()
        bridge = self.names.bridge
        await _ip("link", "add", bridge, "type", "bridge")
        await _ip("link", "set", bridge, "address", self.names.bridge_mac)
        await _ip("addr", "add", f"{self.gateway}/{self._prefix_length}", "dev", bridge)
        await _ip("link", "set", bridge, "up")

    async def teardown(self) -> None:
        if self._lock is None:
            return  # not ours to remove
        await self._remove_leftovers()
        os.close(self._lock)
        self._lock = None

    def allocate(self) -> PodSandbox:
        """An address and names for a pod (create() makes them real)."""
        offset, address = self._pool.allocate()
        return PodSandbox(self.names.netns(offset), self.names.veth(offset), address, offset)

    async def create(self, pod: PodSandbox) -> None:
        ns = pod.netns
        await _ip("netns", "add", ns)
        await _ip("link", "add", pod.veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        await _ip("link", "set", pod.veth, "master", self.names.bridge, "up")
        await _ip("-n", ns, "addr", "add", f"{pod.address}/{self._prefix_length}", "dev", "eth0")
        await _ip("-n", ns, "link", "set", "lo", "up")
        await _ip("-n", ns, "link", "set", "eth0", "up")
        await _ip("-n", ns, "route", "add", "default", "via", self.gateway)

    async def remove(self, pod: PodSandbox) -> None:
        """Kill what still runs in the pod's namespace (as a runtime tearing down a sandbox
        would: processes that left the pod's process group too), delete it (and with it the
        veth pair), and free the address. Safe on a half-created or already removed pod."""
        await _remove_netns(pod.netns)
        with contextlib.suppress(NetworkError):  # gone with its namespace, normally
            await _ip("link", "delete", pod.veth, quiet=True)
        self._pool.release(pod.offset)

    async def _remove_leftovers(self) -> None:
        listed = await _ip("netns", "list")
        for line in listed.splitlines():
            name = line.split(" ", 1)[0]
            if name.startswith(self.names.netns_prefix):
                await _remove_netns(name)
        links = await _ip("-o", "link", "show")
        for line in links.splitlines():  # "7: shv1a2b3c5@if2: <...>"
            name = line.split(":", 2)[1].strip().split("@", 1)[0]
            if name == self.names.bridge or name.startswith(self.names.veth_prefix):
                with contextlib.suppress(NetworkError):
                    await _ip("link", "delete", name, quiet=True)


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding the exclusive lock on `path`; None when another process holds
    it. The lock goes with the process, so a crashed node's is free again."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


async def _remove_netns(name: str) -> None:
    with contextlib.suppress(NetworkError):
        for pid in (await _ip("netns", "pids", name, quiet=True)).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    with contextlib.suppress(NetworkError):
        await _ip("netns", "delete", name, quiet=True)


async def _ip(*args: str, quiet: bool = False) -> str:
    """Run `ip ARGS`; its stdout. NetworkError when it fails (logged unless quiet: the caller
    expects that it may)."""
    process = await asyncio.create_subprocess_exec(
        IP, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        message = f"ip {' '.join(args)}: {stderr.decode().strip()}"
        if not quiet:
            log.warning("%s", message)
        raise NetworkError(message)
    return stdout.decode()
