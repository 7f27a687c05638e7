"""A pod's volumes as files, and the sandbox that mounts them at their paths (pure, plus the
writing of files into a temporary folder)."""

import stat
from pathlib import Path

import pytest

from tests.cluster.test_pod_launch import PLACEMENT, RUNTIME_POD
from tests.support.pod_launch import Mount
from tests.support.pod_references import MissingReference, PodObjects, TokenSpec
from tests.support.pod_sandbox import BindMount, bind_mounts, etc_files, kept_in_view, prepare_sources, sandbox_argv
from tests.support.pod_volumes import VolumeFile, volume_files, write_volume

OBJECTS = PodObjects(
    config_maps={"kube-root-ca.crt": {"ca.crt": b"PEM"}, "app": {"a.yaml": b"a: 1", "b.yaml": b"b: 2"}},
    secrets={"keys": {"api-keys.yaml": b"keys: []"}},
    tokens={TokenSpec((), 3607): "t0k3n", TokenSpec(("vault",), 600): "v4ult"},
)


def files_of(volume: dict, objects: PodObjects = OBJECTS) -> dict[str, VolumeFile]:
    return volume_files(RUNTIME_POD, volume, objects, PLACEMENT)


def test_the_service_account_volume_that_admission_injects_holds_token_ca_and_namespace():
    kube_api_access = next(v for v in RUNTIME_POD["spec"]["volumes"] if v["name"] == "kube-api-access-x1")
    assert files_of(kube_api_access) == {
        "token": VolumeFile(b"t0k3n", 0o644),
        "ca.crt": VolumeFile(b"PEM", 0o644),
        "namespace": VolumeFile(b"team", 0o644),
    }


def test_config_map_and_secret_volumes_hold_their_keys_or_the_items_asked_for():
    assert files_of({"name": "c", "configMap": {"name": "app", "defaultMode": 0o600}}) == {
        "a.yaml": VolumeFile(b"a: 1", 0o600),
        "b.yaml": VolumeFile(b"b: 2", 0o600),
    }
    items = {
        "name": "c",
        "configMap": {"name": "app", "items": [{"key": "b.yaml", "path": "conf/b.yaml", "mode": 0o400}]},
    }
    assert files_of(items) == {"conf/b.yaml": VolumeFile(b"b: 2", 0o400)}
    assert files_of({"name": "k", "secret": {"secretName": "keys"}}) == {
        "api-keys.yaml": VolumeFile(b"keys: []", 0o644)
    }
    assert files_of({"name": "k", "secret": {"secretName": "absent", "optional": True}}) == {}
    with pytest.raises(MissingReference, match='secret "absent" not found') as missing:
        files_of({"name": "k", "secret": {"secretName": "absent"}})
    assert missing.value.reason == "ContainerCreating"


def test_downward_api_and_projected_token_volumes():
    downward = {
        "name": "d",
        "downwardAPI": {
            "items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "pool", "fieldRef": {"fieldPath": "metadata.labels['pool']"}},
                {
                    "path": "mem",
                    "resourceFieldRef": {"containerName": "runtime", "resource": "limits.memory", "divisor": "1Mi"},
                },
            ]
        },
    }
    assert {path: file.data for path, file in files_of(downward).items()} == {
        "labels": b'pool="chat"',
        "pool": b"chat",
        "mem": b"1024",
    }
    token = {
        "name": "v",
        "projected": {
            "sources": [{"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600, "path": "vault-token"}}]
        },
    }
    assert files_of(token) == {"vault-token": VolumeFile(b"v4ult", 0o644)}
    assert files_of({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}) == {}


def test_volumes_are_written_with_their_modes(tmp_path):
    write_volume(tmp_path / "v", {"conf/b.yaml": VolumeFile(b"b: 2", 0o400), "token": VolumeFile(b"t", 0o644)})
    assert (tmp_path / "v" / "conf" / "b.yaml").read_bytes() == b"b: 2"
    assert stat.S_IMODE((tmp_path / "v" / "conf" / "b.yaml").stat().st_mode) == 0o400
    assert stat.S_IMODE((tmp_path / "v").stat().st_mode) == 0o777  # as the kubelet makes an emptyDir


def test_mounts_go_parents_first_then_the_pods_etc_files(tmp_path):
    mounts = [
        Mount("conf", "", "/etc/app/conf", True),
        Mount("tmp", "", "/tmp", False),
        Mount("conf", "a.yaml", "/etc/a.yaml", True),
    ]
    binds = bind_mounts(mounts, tmp_path / "volumes", tmp_path / "etc")
    assert [(b.target, b.source.relative_to(tmp_path).as_posix(), b.read_only) for b in binds] == [
        ("/tmp", "volumes/tmp", False),
        ("/etc/a.yaml", "volumes/conf/a.yaml", True),
        ("/etc/app/conf", "volumes/conf", True),
        ("/etc/hosts", "etc/hosts", False),
        ("/etc/resolv.conf", "etc/resolv.conf", False),
    ]
    (tmp_path / "volumes" / "conf").mkdir(parents=True)
    (tmp_path / "volumes" / "conf" / "a.yaml").write_text("a: 1")
    prepared = prepare_sources(binds[:3])
    assert [b.file for b in prepared] == [False, True, False]
    assert (tmp_path / "volumes" / "tmp").is_dir()  # a missing source folder is made, as for a subPath


def test_the_sandbox_opens_every_source_before_mounting_then_execs_the_command():
    binds = [
        BindMount(Path("/state/v/tmp"), "/tmp", False),
        BindMount(Path("/state/v/conf/a b"), "/etc/a b", True, file=True),
    ]
    argv = sandbox_argv("shoal-abc-2", binds, "/work dir", ["/venv/bin/python", "-c", "print(1)"])
    assert argv[1:4] == ["netns", "exec", "shoal-abc-2"] and argv[-4:] == ["pod", "/venv/bin/python", "-c", "print(1)"]
    script = argv[argv.index("-c") + 1].splitlines()
    assert script[:2] == ["set -e", "exec {m0}</state/v/tmp {m1}<'/state/v/conf/a b'"]
    assert "mkdir -p -- /tmp" in script and "[ -e '/etc/a b' ] || { mkdir -p -- /etc; : > '/etc/a b'; }" in script
    assert any(line.endswith("-c --bind /proc/self/fd/$m0 /tmp") for line in script)
    assert any(line.endswith("-c -o remount,bind,ro '/etc/a b'") for line in script)
    assert script[-3:] == ["exec {m0}<&- {m1}<&-", "cd -- '/work dir'", 'exec "$@"']


def test_the_nodes_software_under_a_pods_mount_is_bound_back_after_it():
    # CI's fresh clone may live under /tmp, where the chart's pods mount an emptyDir.
    binds = [BindMount(Path("/state/v/tmp"), "/tmp", False), BindMount(Path("/state/v/conf"), "/etc/shoal", True)]
    software = (Path("/tmp/ci"), Path("/tmp/ci/.venv"), Path("/root/.pyenv/versions/3.11.7"), Path("/root"))
    kept = kept_in_view(binds, software)
    assert kept == [
        BindMount(Path("/tmp/ci"), "/tmp/ci", False),
        BindMount(Path("/tmp/ci/.venv"), "/tmp/ci/.venv", False),
    ]
    assert kept_in_view([BindMount(Path("/state/v/conf"), "/etc/shoal", True)], software) == []


def test_the_pods_hosts_file_names_the_pod_and_the_kubernetes_service():
    files = etc_files(hostname="web-0", pod_ip="10.9.0.7", namespace="team", api_host="10.9.0.1", subdomain="web")
    lines = files["hosts"].splitlines()
    assert "127.0.0.1\tlocalhost" in lines and "10.9.0.7\tweb-0.web.team.svc.cluster.local\tweb-0" in lines
    assert (
        "10.9.0.1\tkubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local" in lines
    )
    assert "nameserver 127.0.0.1" in files["resolv.conf"]
