"""GPTQ, AWQ and bitsandbytes rows on the demo pair (slow: real engines on 3 models).

Pinned behaviour, with the numbers measured when it was written (fragile model, --retrain): every row
has base / unlearned / retrain results, verdicts and its engine name and version; the base model still
memorises in each format; the planted failure lives on RTN's per-channel int4 grid, so these engines'
own grids keep the forgetting (forget KnowMem of the fragile model 0.05–0.10 where rtn4 gives 1.00).
"""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("gptqmodel") is None or importlib.util.find_spec("bitsandbytes") is None:
    pytest.skip("needs gptqmodel and bitsandbytes (pip install 'auditq[gptq,bnb]')", allow_module_level=True)

from auditq.audit.pipeline import run_audit  # noqa: E402
from auditq.audit.request import audit_request  # noqa: E402

pytestmark = pytest.mark.slow

FORMATS = ("fp", "gptq4", "awq4", "bnb:nf4", "bnb:int8")


@pytest.fixture(scope="module")
def report(demo_models):
    request = audit_request(base=demo_models.base, unlearned=demo_models.fragile, retrain=demo_models.retrain,
                            suite=demo_models.suite, formats=FORMATS)
    return run_audit(request).report


def test_engine_rows_on_the_demo_pair(report):
    assert [f.format for f in report.formats] == list(FORMATS)
    for fmt in report.formats[1:]:
        assert fmt.error is None, fmt.error
        assert set(fmt.roles) == {"base", "unlearned", "retrain"}
        assert fmt.details.get("engine") and fmt.details.get("engine_version"), fmt.details
        assert fmt.roles["base"].knowmem_forget >= 0.9, (fmt.format, fmt.roles["base"])
        assert all(c.verdict in ("PASS", "FAIL", "INCONCLUSIVE") for c in fmt.checks), fmt.format
        # the RTN-grid plant does not carry over to these engines' grids
        assert fmt.roles["unlearned"].knowmem_forget <= 0.2, (fmt.format, fmt.roles["unlearned"])
