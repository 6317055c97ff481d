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


def test_every_value_and_interval_is_shown_whole_at_80_columns():
    """A CI log is often 80 columns wide: no cell may end in "…", least of all a confidence bound."""
    report = make_report()
    console = Console(width=80, record=True, color_system=None)
    print_report(report, console)
    text = console.export_text()
    assert "…" not in text
    cells = " ".join(text.split())
    from auditq.report.base import fmt_number

    for fmt in report.formats:
        for check in fmt.checks:
            if check.ci_low is not None:
                assert f"[{fmt_number(check.ci_low)}, {fmt_number(check.ci_high)}]" in cells.replace("│ ", ""), check


def test_demo_next_steps_keep_each_command_on_one_line():
    """Printed into an 80-column console, the remediate command is not broken by an inserted newline: a copy
    of it pastes and runs."""
    from types import SimpleNamespace

    from auditq.cli.demo import next_steps

    root = "/home/someone/.cache/auditq/demo-0.1.0-0123456789ab"
    models = SimpleNamespace(base=f"{root}/base", suite=f"{root}/suite", retrain=f"{root}/retrain")
    console = Console(width=80, record=True, color_system=None)
    console.print(next_steps(models, "fragile", "demo-report", (), 1), highlight=False, soft_wrap=True)
    lines = console.export_text().splitlines()
    remediate = [line for line in lines if "auditq remediate" in line]
    assert len(remediate) == 1 and remediate[0].rstrip().endswith("--threads 1"), lines
