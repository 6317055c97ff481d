"""Fixtures for the compliance-gate tests (report/gate_fixtures.py), shared with tests/cache."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # report_helpers, gate_fixtures

from gate_fixtures import _isolated_cache, cli, memorised, random_pair, synthetic_report  # noqa: E402,F401
