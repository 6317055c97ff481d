"""test_waivers.py checks waivers end to end on the compliance-gate fixtures' tiny checkpoints
(tests/report/gate_fixtures.py), as tests/cache does."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))  # report_helpers, gate_fixtures

from gate_fixtures import _isolated_cache, cli, memorised  # noqa: E402,F401
