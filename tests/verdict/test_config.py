"""Threshold precedence: defaults < pyproject [tool.auditq] < auditq.toml < flags."""

import pytest

from auditq.errors import InputError
from auditq.verdict.config import load_config


def test_defaults(tmp_path):
    config = load_config(tmp_path)
    assert config.checks["forget_retention"].threshold == 0.25
    assert config.checks["recovery"].threshold == 0.10
    assert config.checks["privleak"].threshold == 20
    assert config.checks["utility"].threshold == 0.5 and config.checks["utility"].severity == "warn"


def test_precedence(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.auditq]\nmin_n = 10\n[tool.auditq.checks.recovery]\nthreshold = 0.2\n"
        "[tool.auditq.checks.privleak]\nthreshold = 30\n")
    (tmp_path / "auditq.toml").write_text("[checks.recovery]\nthreshold = 0.3\nseverity = 'warn'\n")
    config = load_config(tmp_path, thresholds=["privleak=15"], severities=["utility=error"])
    assert config.min_n == 10
    assert config.checks["recovery"].threshold == 0.3 and config.checks["recovery"].severity == "warn"
    assert config.checks["privleak"].threshold == 15
    assert config.checks["utility"].severity == "error"
    assert config.sources[-1] == "flags"


@pytest.mark.parametrize("content", [
    "[checks.nope]\nthreshold = 1\n", "[checks.recovery]\nseverity = 'fatal'\n", "bogus = 1\n",
    "[checks.recovery]\nthreshold = 'high'\n", "min_n = 0\n", "[[[",
])
def test_bad_config(tmp_path, content):
    (tmp_path / "auditq.toml").write_text(content)
    with pytest.raises(InputError):
        load_config(tmp_path)


@pytest.mark.parametrize("flag", ["recovery", "nope=1", "recovery=abc"])
def test_bad_flags(tmp_path, flag):
    with pytest.raises(InputError):
        load_config(tmp_path, thresholds=[flag])
