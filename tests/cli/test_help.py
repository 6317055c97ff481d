"""`--help` reads at 80 columns: nothing truncated, argument names instead of placeholders, every option
described, the exit codes listed. Rendered by the installed `auditq` in a subprocess, as a user sees it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest



def _every_command() -> list[list[str]]:
    """Every command and sub-command the app registers, read from the app itself, so a new command is covered."""
    import click
    import typer

    from auditq.cli.app import app

    def walk(command: click.Command, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


COMMANDS = _every_command()
AUDITS = [["check"], ["demo"], ["remediate"], ["sweep"]]


def test_every_command_is_listed():
    assert {"check", "demo", "remediate", "sweep", "report", "cache", "version"} <= {c[0] for c in COMMANDS if c}


def _help(args: list[str], tmp_path: Path) -> str:
    exe = Path(sys.executable).parent / "auditq"
    exe = exe if exe.exists() else Path(shutil.which("auditq") or "auditq")
    env = {"PATH": f"{exe.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "COLUMNS": "80"}
    result = subprocess.run([str(exe), *args, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "auditq")
def test_help_fits_80_columns_without_truncation(args, tmp_path):
    text = _help(args, tmp_path)
    assert "…" not in text and not re.search(r"\w\.\.\.$", text, re.M), text
    assert max(len(line) for line in text.splitlines()) <= 80, text
    usage = text.split("\n", 1)[0]
    assert not any(c.islower() for c in usage.split("[OPTIONS]", 1)[-1] if c.isalpha()), usage  # {BASE}, not {base}
    assert "<bool>" not in text and "<list[" not in text, text
    assert not re.search(r"--no-(allow-inconclusive|trust-remote-code|rebuild|force)\b", text), text


@pytest.mark.parametrize("args", AUDITS, ids=" ".join)
def test_help_lists_exit_codes_and_describes_every_option(args, tmp_path):
    text = _help(args, tmp_path)
    assert "Exit codes: 0" in text and "2 bad input" in text and "3 something could not be measured" in text
    options = text.split("Options:", 1)[1].split("Exit codes:", 1)[0]
    entries = re.split(r"\n(?=  -)", "\n" + options.strip("\n"))
    for entry in (e for e in entries if e.strip()):
        first, *rest = entry.strip("\n").splitlines()
        described = re.split(r"\s{2,}", first.strip(), maxsplit=1)[1:] or [line.strip() for line in rest]
        assert any(part.strip() for part in described), f"{args}: no description for {first.strip()!r}"


def test_check_help_tells_the_truth(tmp_path):
    text = " ".join(_help(["check"], tmp_path).split())
    assert "Usage: auditq check [OPTIONS] {BASE} {UNLEARNED}" in text  # typer braces a required argument
    for family in ("gptq4", "awq4", "bnb:nf4", "gguf:", "fp8", "prune:", "relearn:", "paper-code"):
        assert family in text, family
    assert "default: BASE in the same format" not in text  # BASE saw the forget set: it is never the reference


def test_remediate_help_names_the_granularity_values(tmp_path):
    text = " ".join(_help(["remediate"], tmp_path).split())
    assert "module (default" in text and "row (" in text
