"""The cache tests measure the compliance-gate fixtures' tiny checkpoints (tests/report/gate_fixtures.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))  # report_helpers, gate_fixtures

from gate_fixtures import _isolated_cache, cli, memorised, random_pair  # noqa: E402,F401
