"""The files under crds/, read once."""

from pathlib import Path

import yaml

CRDS = Path(__file__).parents[2] / "crds"
MODELPOOL_CRD = yaml.safe_load((CRDS / "modelpool.yaml").read_text())
