"""Every shell block in README.md and docs/ pastes into bash and does what the text says.

A comment after a line-continuation backslash (`--retrain x \\   # optional`) turns the rest of a pasted
command into new commands ("--suite: command not found"); `bash -n` cannot see it (the backslash escapes a
space), so it is checked on its own. The README's demo and report blocks are run for real (slow: they
need the demo models, which the session's demo_models fixture builds once).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "probes" / "README.md"]
FENCE = re.compile(r"^```(bash|sh|shell|console)?\s*$")


def shell_blocks(path: Path) -> list[tuple[int, str]]:
    """(first line number, text) of every ```bash / ```sh block of a Markdown file."""
    blocks, current, start, lang = [], None, 0, None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if current is None and line.startswith("```"):
            lang = line[3:].strip()
            current, start = [], number + 1
        elif current is not None and line.startswith("```"):
            if lang in ("bash", "sh", "shell"):
                blocks.append((start, "\n".join(current) + "\n"))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


ALL_BLOCKS = [(path, line, text) for path in DOCS if path.exists() for line, text in shell_blocks(path)]


def test_the_docs_have_shell_blocks():
    readme = [b for b in ALL_BLOCKS if b[0].name == "README.md" and b[0].parent == REPO]
    assert len(readme) >= 6 and len(ALL_BLOCKS) > len(readme)


@pytest.mark.parametrize("path, line, text", ALL_BLOCKS,
                         ids=[f"{p.relative_to(REPO)}:{n}" for p, n, _ in ALL_BLOCKS])
def test_block_parses_in_bash(path, line, text):
    result = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, f"{path.name}:{line}: {result.stderr}"


@pytest.mark.parametrize("path, line, text", ALL_BLOCKS,
                         ids=[f"{p.relative_to(REPO)}:{n}" for p, n, _ in ALL_BLOCKS])
def test_no_comment_after_a_continuation(path, line, text):
    for offset, row in enumerate(text.splitlines()):
        assert not re.search(r"\\[ \t]+#", row), f"{path.name}:{line + offset}: a comment after '\\' breaks the paste"
        assert not re.search(r"\\[ \t]+$", row), f"{path.name}:{line + offset}: a space after '\\' breaks the paste"


def _readme_block(starts_with: str) -> str:
    found = [text for path, _, text in ALL_BLOCKS
             if path == REPO / "README.md" and text.lstrip().startswith(starts_with)]
    assert len(found) == 1, f"README.md has {len(found)} blocks starting with {starts_with!r}"
    return found[0]


@pytest.mark.slow
def test_readme_demo_and_report_blocks_run_as_written(demo_models, tmp_path):
    """`auditq demo --out demo-report` then the README's `auditq report` block, pasted into bash in a fresh
    directory with a clean environment (the demo models the session built are linked into its cache)."""
    exe = Path(sys.executable).parent / "auditq"
    if not exe.exists():
        exe = Path(shutil.which("auditq") or "auditq")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / demo_models.root.name).symlink_to(demo_models.root, target_is_directory=True)
    env = {"PATH": f"{exe.parent}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
           "AUDITQ_CACHE_DIR": str(cache)}
    work = tmp_path / "work"
    work.mkdir()
    demo = subprocess.run(["bash", "-e", "-c", _readme_block("auditq demo")], cwd=work, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert demo.returncode == 1, demo.stderr[-2000:]  # the planted failure: FAIL at rtn4
    assert "Traceback" not in demo.stderr
    report = json.loads((work / "demo-report" / "report.json").read_text())
    assert report["verdict"] == "FAIL"
    assert {"report.md", "junit.xml", "samples.jsonl"} <= {p.name for p in (work / "demo-report").iterdir()}
    assert "demo-report" in demo.stdout + demo.stderr  # the demo says where its report is
    rendered = subprocess.run(["bash", "-c", _readme_block("auditq report demo-report")], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
    assert "Traceback" not in rendered.stderr and rendered.returncode in (0, 1), rendered.stderr[-2000:]
    html = (work / "demo-html" / "report.html").read_text(encoding="utf-8")
    assert "rtn4" in html and "FAIL" in html
    assert (work / "demo-html" / "report.md").read_text(encoding="utf-8").count("rtn4") >= 1
