#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kube-scheduler, pinned by go.mod beside
# this file, into a folder named after the pins, outside the work tree
# ($SHOAL_K8S_CACHE, default ~/.cache/shoal/k8s), so a fresh clone on the same machine reuses them.
#   build.sh          build, unless that folder is already complete
#   build.sh --path   print the folder (the tests find the binaries there)
# The version is stamped the way Kubernetes' own build does it, so /version, kubectl and helm see
# v1.x.y, not v0.0.0-master.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
k8s_version=$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$here/go.mod")
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2; exit}' "$here/go.mod")
dest=${SHOAL_K8S_CACHE:-$HOME/.cache/shoal/k8s}/kubernetes-$k8s_version-etcd-$etcd_version
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler)
if [ "${1:-}" = --path ]; then
	echo "$dest"
	exit 0
fi
complete=true
for binary in "${binaries[@]}"; do [ -x "$dest/$binary" ] || complete=false; done
if $complete; then
	echo "control-plane binaries: $dest (cached)"
	exit 0
fi
echo "building ${binaries[*]} ($k8s_version, etcd $etcd_version) into $dest: about 4 minutes on 2 cores"
mkdir -p "$(dirname "$dest")"
minor=$(echo "$k8s_version" | cut -d. -f2)
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
staging=$(mktemp -d "$(dirname "$dest")/.build.XXXXXX")
trap 'rm -rf "$staging"' EXIT
cd "$here"
# GOTOOLCHAIN=local: build with the machine's Go, never download another toolchain.
GOTOOLCHAIN=local GOFLAGS=-buildvcs=false go build -trimpath -ldflags "$ldflags" -o "$staging/" tool
mv "$staging/server" "$staging/etcd"  # go names the binary after the module path's last element before /v3
"$staging/kube-apiserver" --version
"$staging/etcd" --version | head -1
chmod 755 "$staging"
rm -rf "$dest" && mv "$staging" "$dest"
trap - EXIT
echo "control-plane binaries: $dest"
