"""Issue 11 finding 5: every writer escapes what it writes. A waiver reason or message with control
characters, HTML, Markdown or rich markup must leave junit.xml well-formed XML 1.0, report.md free of
raw HTML, report.html escaped, SARIF valid, and the terminal printing the text literally."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from dataclasses import replace

from report_helpers import make_report
from rich.console import Console

from auditq.report import WRITERS
from auditq.report.escape import md, visible
from auditq.report.terminal import print_report

HOSTILE = "bell\x07 esc\x1b[31m nul\x00 <script>alert(1)</script> **bold** [red]markup[/] | pipe `tick` \ufffe"


def hostile_report():
    report = make_report(waivers=({"check": "privleak", "format": "rtn4", "reason": HOSTILE, "expires": "2030-01-01",
                                   "source": "w.toml", "status": "applied", "detail": HOSTILE},))
    formats = []
    for fmt in report.formats:
        checks = tuple(replace(c, message=HOSTILE) for c in fmt.checks)
        roles = {k: replace(v, error=HOSTILE) if k == "retrain" else v for k, v in fmt.roles.items()}
        formats.append(replace(fmt, checks=checks, roles=roles, details={**fmt.details, "note": HOSTILE}))
    return replace(report, formats=tuple(formats), suite={**report.suite, "name": HOSTILE})


def test_junit_is_well_formed_xml():
    text = WRITERS.load("junit")().render(hostile_report())
    root = ET.fromstring(text.encode("utf-8"))  # raises on a control character
    assert root.tag == "testsuites"
    assert "\\x07" in text and "\x07" not in text and "\x1b" not in text and "\x00" not in text


def test_markdown_has_no_raw_html_or_table_breaks():
    text = WRITERS.load("md")().render(hostile_report())
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "\x1b" not in text and "\x07" not in text
    for line in text.splitlines():
        if line.startswith("| ") and HOSTILE[:4] in line:
            assert line.count(" | ") == line.replace("\\|", "").count(" | ")  # pipes inside cells are escaped


def test_html_and_sarif_escape():
    html = WRITERS.load("html")().render(hostile_report())
    assert "<script>" not in html and "\x1b" not in html and "\x07" not in html
    sarif = WRITERS.load("sarif")().render(hostile_report())
    data = json.loads(sarif)
    texts = [r["message"]["text"] for r in data["runs"][0]["results"]]
    assert texts and all("\x1b" not in t and "\x07" not in t for t in texts)


def test_terminal_prints_markup_literally_and_no_escape_sequences():
    buffer = io.StringIO()
    print_report(hostile_report(), Console(file=buffer, width=200, color_system=None))
    text = buffer.getvalue()
    assert "[red]markup[/]" in text and "\x1b" not in text and "\x07" not in text


def test_helpers():
    assert visible("a\x00b\tc\n") == "a\\x00b\tc\n"
    assert md("a|b<c>") == "a\\|b&lt;c&gt;"
