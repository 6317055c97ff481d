"""The terminal view: a model that could not be measured gets its whole error on one line under the
metrics table, not folded into a narrow cell; the PrivLeak sign is stated."""

from __future__ import annotations

from dataclasses import replace

from report_helpers import make_report
from rich.console import Console

from auditq.report.terminal import print_report
from auditq.result.model import RoleMetrics

ERROR = ("RuntimeError: GPTQModel could not quantize: Virtual pool 'model_loader:cpu' requests 2 workers "
         "but parent 'cpu' only has 1 (log kept at /tmp/out/gptq4-base.log)")


def test_row_error_is_one_whole_line_under_the_table():
    report = make_report()
    broken = replace(report.formats[1], roles={**report.formats[1].roles,
                                               "base": RoleMetrics(role="base", error=ERROR)})
    report = replace(report, formats=(report.formats[0], broken, *report.formats[2:]))
    console = Console(width=80, record=True, color_system=None)
    print_report(report, console)
    lines = console.export_text().splitlines()
    whole = [line for line in lines if ERROR in line]
    assert len(whole) == 1 and whole[0].startswith("error ") and f"{broken.format} base" in whole[0]
    # the table itself only points at it: no fragment of the message is folded into a cell
    assert not any("Virtual pool" in line and ERROR not in line for line in lines)
    assert any("negative = under-unlearned" in line for line in lines)
