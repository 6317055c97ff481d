"""test_reference_attack.py audits the compliance-gate fixtures' tiny memorising checkpoint
(tests/report/gate_fixtures.py), as tests/cache does; every test here gets its own result-cache directory."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))  # report_helpers, gate_fixtures

from gate_fixtures import _isolated_cache, memorised  # noqa: E402,F401
