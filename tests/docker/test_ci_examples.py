"""examples/ci install auditq from its repository (it is on no package index), under the checkout's
constraints.txt, with torch's CPU build installed first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ci"


def _shell_lines(path: Path) -> list[str]:
    """Every shell line of the example: GitHub `run:` blocks, GitLab before_script / script items."""
    data = yaml.safe_load(path.read_text())
    if path.name == "github-actions.yml":
        steps = [step for job in data["jobs"].values() for step in job["steps"]]
        return [line.strip() for step in steps for line in str(step.get("run", "")).splitlines()]
    job = data["auditq"]
    return [line.strip() for key in ("before_script", "script") for item in job[key] for line in str(item).splitlines()]


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_installs_auditq_from_a_checkout(name):
    lines = [line for line in _shell_lines(EXAMPLES / name) if not line.startswith("#")]
    installs = [line for line in lines if re.search(r"\bpip install\b", line)]
    assert installs[0].endswith("torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    (auditq,) = [line for line in installs if "auditq" in line]
    assert auditq.startswith("PIP_CONSTRAINT=.auditq-src/constraints.txt ")
    assert re.search(r"""pip install "?\./\.auditq-src(\[[a-z,]+\])?"?$""", auditq), auditq  # the checkout, not an index
    assert "auditq version" in lines


def test_the_checkout_is_of_the_auditq_repository():
    github = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    steps = github["jobs"]["auditq"]["steps"]
    assert any(s.get("uses", "").startswith("actions/checkout") and s.get("with", {}).get("path") == ".auditq-src"
               and s["with"].get("repository") for s in steps)
    gitlab = "\n".join(_shell_lines(EXAMPLES / "gitlab-ci.yml"))
    assert 'git clone --depth 1 --branch "$AUDITQ_REF" "$AUDITQ_REPO_URL" .auditq-src' in gitlab
